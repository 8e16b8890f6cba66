"""Export any nn.Module: your own model, code written against mamba_ssm or the official VMamba / Vim code.

    from avssm.export.module_export import export_module, load_model_spec
    model = load_model_spec("mynet:build")                      # a module path and a model or a factory of one
    result = export_module(model, "mynet.onnx", inputs=[("x", (1, 256, 64))], verify=True)

avssm's compatibility layer (:mod:`avssm.compat`) is installed first, so code written against the CUDA-only kernel
modules imports, and each scan it runs becomes one SelectiveScan node (the plugin form) or standard ops
(``scan_op="portable"``). The file carries avssm metadata with ``task: "custom"``.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch

from avssm.compat.selective_scan_cuda import NotCoveredError
from avssm.errors import AvssmError
from avssm.export.onnx_export import ExportResult, _tensor_infos
from avssm.export.options import PRECISIONS, SCAN_OPS
from avssm.graph.metadata import make_metadata, write_metadata
from avssm.graph.scan_node import layout_counts, scan_node_names
from avssm.ops import selective_scan_onnx
from avssm.outputs import atomic_output, check_output, faults_as


def load_model_spec(spec: str) -> torch.nn.Module:
    """``"package.module:name"`` -> the nn.Module it names, or the one its factory (a class or a function called with
    no arguments) returns. The current folder is importable, as for ``python -m``. One line naming the spec
    otherwise."""
    from avssm import compat

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise AvssmError(f"MODEL {spec}: expected package.module:name (a model, or a factory that returns one)")
    compat.install()
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - the user's module failing to import, in whatever way
        raise AvssmError(f"MODEL {spec}: cannot import {module_name} ({type(e).__name__}: {e})") from None
    target = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise AvssmError(f"MODEL {spec}: {module_name} has no attribute {attribute}")
        target = getattr(target, part)
    if isinstance(target, torch.nn.Module):
        return target
    if callable(target):
        try:
            model = target()
        except Exception as e:  # noqa: BLE001
            raise AvssmError(f"MODEL {spec}: calling {attribute}() failed ({type(e).__name__}: {e})") from None
        if isinstance(model, torch.nn.Module):
            return model
    raise AvssmError(f"MODEL {spec}: {attribute} is not an nn.Module nor a factory that returns one")


def parse_inputs(texts: list[str]) -> list[tuple[str, tuple[int, ...]]]:
    """``["x=1x256x64", ...]`` (or ``"1x3x224x224"``, named input0, input1, ...) -> [(name, shape), ...]."""
    parsed = []
    for i, text in enumerate(texts):
        name, _, shape = text.rpartition("=")
        try:
            dims = tuple(int(d) for d in shape.lower().split("x"))
        except ValueError:
            dims = ()
        if not dims or any(d < 1 for d in dims):
            raise AvssmError(f"--input {text}: expected NAME=1x3x224x224 (dimensions of at least 1)")
        parsed.append((name or f"input{i}", dims))
    return parsed


def parse_dynamic_axes(texts: list[str], inputs: list[tuple[str, tuple[int, ...]]]) -> dict[str, list[int]]:
    """``["images=2,3", "x=1"]`` -> {"images": [2, 3], "x": [1]}: the axes of named inputs that are dynamic."""
    ranks = dict((name, len(shape)) for name, shape in inputs)
    axes: dict[str, list[int]] = {}
    for text in texts:
        name, _, listed = text.partition("=")
        try:
            values = sorted({int(a) for a in listed.split(",")})
        except ValueError:
            values = []
        if name not in ranks or not values or any(not 0 <= a < ranks[name] for a in values):
            known = ", ".join(f"{n} (axes 0-{r - 1})" for n, r in ranks.items())
            raise AvssmError(f"--dynamic-axes {text}: expected INPUT=AXIS[,AXIS...] for an input given with --input: "
                             f"{known}")
        axes.setdefault(name, [])
        axes[name] = sorted(set(axes[name]) | set(values))
    return axes


def export_module(model: torch.nn.Module, output, *, inputs: list[tuple[str, tuple[int, ...]]], checkpoint=None,
                  dynamic: bool = False, dynamic_axes: dict[str, list[int]] | None = None, scan_op: str = "plugin", fused: bool = True, precision: str = "fp32",
                  opset: int = 17,
                  verify: bool = False, name: str | None = None, output_names: list[str] | None = None,
                  progress: Callable[[str], None] | None = None) -> ExportResult:
    """Export ``model`` called on random inputs of the given shapes. ``output_names`` name its outputs, in order
    (default ``output``, or ``output0``, ``output1``, ...). ``dynamic`` makes each input's and output's first
    dimension (the batch) symbolic; ``dynamic_axes`` names further axes of inputs (``{"images": [2, 3]}``:
    height and width), and the outputs' extents follow them. ``fused=False`` writes the scans of avssm's VMamba and Vim modules as version
    1 nodes with their traversal copies (as `avssm export --unfused`). ``precision="fp16"`` makes the graph and its float inputs fp16 (the outputs
    stay fp32; each scan node takes A, D and delta_bias in fp32 and keeps its state in fp32). ``verify`` runs
    the file on ONNX Runtime (the portable form; the plugin form with avssm's CPU op where it is built) against
    PyTorch in fp32 on those inputs and, where axes are dynamic, on inputs twice as long on each of them."""
    from avssm import compat
    from avssm.graph.lowering import lower_selective_scan

    step = progress or (lambda message: None)
    if scan_op not in SCAN_OPS:
        raise AvssmError(f"--scan-op {scan_op}: expected {' or '.join(SCAN_OPS)}")
    if precision not in PRECISIONS:
        raise AvssmError(f"--precision {precision}: expected {' or '.join(PRECISIONS)}")
    if not inputs:
        raise AvssmError("--input: give the shape of each of the model's inputs, e.g. --input x=1x256x64")
    output = Path(output)
    check_output(output, "--output", inputs={"--checkpoint": checkpoint})
    compat.install()
    if checkpoint is not None:
        from avssm.models.checkpoint import extract_state_dict, load_state_dict_checked, read_checkpoint_file

        load_state_dict_checked(model, extract_state_dict(read_checkpoint_file(checkpoint),
                                                          source=f"checkpoint {checkpoint}"),
                                source=f"checkpoint {checkpoint}")
    model = model.eval()
    names = [n for n, _ in inputs]
    generator = torch.Generator().manual_seed(0)
    example = [torch.randn(*shape, generator=generator) for _, shape in inputs]
    expected = _outputs(model, example)
    traced, traced_example = model, example
    if precision == "fp16":
        import copy

        from avssm.models.layers import to_half

        traced = _FloatOutputs(to_half(copy.deepcopy(model))).eval()
        traced_example = [x.half() for x in example]
    if output_names and len(output_names) != len(expected):
        raise AvssmError(f"--output-name: {len(output_names)} names given ({', '.join(output_names)}) for the "
                         f"{len(expected)} outputs the model returns; give one per output, in order")
    if len(set(names + list(output_names or []))) != len(names) + len(output_names or []):
        raise AvssmError(f"--input / --output-name: names must all differ, got {', '.join(names + (output_names or []))}")
    output_names = list(output_names or ([f"output{i}" for i in range(len(expected))] if len(expected) > 1
                                         else ["output"]))
    axes = {n: {0: "batch"} for n in names + output_names} if dynamic else {}
    for n, listed in (dynamic_axes or {}).items():
        axes.setdefault(n, {}).update({a: "batch" if a == 0 else f"{n}_{a}" for a in listed})
    with faults_as("--output", output), atomic_output(output) as tmp:
        step(f"tracing {name or type(model).__name__}")
        form = contextlib.nullcontext() if fused else selective_scan_onnx.unfused_export()
        try:
            with selective_scan_onnx.recording_scans() as shapes, form, torch.no_grad():
                torch.onnx.export(traced, tuple(traced_example), str(tmp), dynamo=False, opset_version=opset,
                                  input_names=names, output_names=output_names, dynamic_axes=axes or None)
        except NotCoveredError as e:
            raise AvssmError(f"MODEL {name or type(model).__name__}: {e}") from None
        proto = onnx.load(str(tmp))
        layouts = layout_counts(proto)
        if scan_op == "portable":
            step("lowering SelectiveScan to standard ops")
            proto = lower_selective_scan(proto, lengths=shapes.lengths, groups=shapes.groups)
        metadata = dict(make_metadata(name or type(model).__name__, scan_op=scan_op, precision=precision, opset=opset,
                                      dynamic=bool(axes)),
                        task="custom", input={"name": names[0], "dtype": "float16" if precision == "fp16" else
                                              "float32"}, outputs=None,
                        inputs={n: list(s) for n, s in inputs})
        write_metadata(proto, metadata)
        onnx.save(proto, str(tmp))
        verification = []
        if verify:
            step("verifying against PyTorch")
            runs = [(dict(zip(names, traced_example)), expected, None)]
            if axes:  # a second size: what the trace baked in as a constant shows there
                grown = [torch.randn(*[d * 2 if a in axes.get(n, {}) else d for a, d in enumerate(shape)],
                                     generator=generator) for n, shape in inputs]
                want = _outputs(model, grown)
                grown_feeds = {n: x.half() if precision == "fp16" else x for n, x in zip(names, grown)}
                runs.append((grown_feeds, want, ", ".join(f"{n}[{','.join(map(str, x.shape))}]"
                                                          for n, x in zip(names, grown))))
            for feeds, want, at in runs:
                rows = _verify(proto, feeds, output_names, want,
                               scan_op if precision == "fp32" else "portable")  # the CPU op is fp32 only
                verification += [dict(row, at=at) if at else row for row in rows]
    return ExportResult(str(output), output.stat().st_size, len(proto.graph.node), len(scan_node_names(proto)),
                        _tensor_infos(proto.graph.input), _tensor_infos(proto.graph.output), metadata, verification,
                        scan_layouts=layouts)


def scans_found(result: ExportResult) -> str:
    """The line that says what became of the model's scans: how many were found, in which form."""
    layouts = result.scan_layouts
    if not layouts:
        return ("scans: none found. A scan computed in plain PyTorch (a loop over the sequence) is in the file as "
                "that loop's ops, one set per step; see docs/your-model.md for the calls that become a scan")
    count = sum(layouts.values())
    if result.metadata.get("scan_op") == "portable":
        return f"scans: {count} found, lowered to standard ops (portable form)"
    kinds = ", ".join(f"{n} {name}" + (" (version 2)" if name != "sequence" else " (version 1)")
                      for name, n in layouts.items())
    return f"scans: {count} found, each one SelectiveScan node: {kinds}"


def _outputs(model: torch.nn.Module, inputs: list) -> list:
    """The model's outputs on ``inputs``, as a list (one output or several)."""
    with torch.no_grad():
        out = model(*inputs)
    return list(out) if isinstance(out, (tuple, list)) else [out]


class _FloatOutputs(torch.nn.Module):
    """An fp16 model whose float outputs come back in fp32, as the zoo's fp16 files give them."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, *inputs):
        out = self.inner(*inputs)
        if isinstance(out, (tuple, list)):
            return tuple(o.float() if o.is_floating_point() else o for o in out)
        return out.float() if out.is_floating_point() else out


def _verify(proto, feeds, output_names, expected, scan_op) -> list[dict]:
    import onnxruntime as ort

    from avssm import native
    from avssm.graph.lowering import lower_selective_scan

    options = ort.SessionOptions()
    library = native.ort_scan_op_library() if scan_op == "plugin" else None
    if library is not None:
        options.register_custom_ops_library(str(library))
        model, runtime = proto.SerializeToString(), "onnxruntime, avssm CPU op"
    else:
        model, runtime = lower_selective_scan(proto).SerializeToString(), "onnxruntime, standard ops"
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    got = session.run(output_names, {k: v.numpy() for k, v in feeds.items()})
    rows = []
    for out_name, value, want in zip(output_names, got, expected):
        want = want.float().numpy()
        error = float(np.abs(value - want).max()) if want.size else 0.0
        rows.append({"output": out_name, "max_abs": error, "max_rel": error / max(float(np.abs(want).max()), 1e-12),
                     "finite": bool(np.isfinite(value).all()), "runtime": runtime})
    return rows
