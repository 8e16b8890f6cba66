"""Export an avssm model to ONNX, in the plugin form (SelectiveScan nodes for TensorRT) or the
portable form (standard ops only), with the metadata a runtime needs and an optional verification.

    from avssm.export import export_onnx
    result = export_onnx("vmamba_tiny_det", "model.onnx", scan_op="portable", verify=True)
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

import avssm
from avssm.errors import AvssmError
from avssm.export.options import MIN_OPSET, PRECISIONS, SCAN_OPS, ExportOptions
from avssm.outputs import atomic_output, check_output, faults_as
from avssm.graph.metadata import make_metadata, read_metadata, write_metadata
from avssm.graph.scan_node import layout_counts
from avssm.sizes import parse_size



@dataclass
class TensorInfo:
    name: str
    shape: list
    dtype: str

    def __str__(self) -> str:
        return f"{self.name}[{','.join(str(d) for d in self.shape)}] {self.dtype}"


@dataclass
class ExportResult:
    path: str
    size_bytes: int
    nodes: int
    scan_nodes: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    metadata: dict
    verification: list[dict] = field(default_factory=list)
    scan_layouts: dict = field(default_factory=dict)  # SelectiveScan nodes by layout, before any lowering

    def summary(self) -> str:
        return (f"wrote {self.path} ({self.size_bytes / 2**20:.1f} MiB): {self.nodes} nodes, "
                f"{self.scan_nodes} SelectiveScan; inputs {', '.join(map(str, self.inputs))}; "
                f"outputs {', '.join(map(str, self.outputs))}")

    def to_dict(self) -> dict:
        return asdict(self)


def parse_input_size(text: str, flag: str = "--input-size") -> tuple[int, int]:
    """'1080x1920' (H x W) -> (1080, 1920); the range is checked by export_onnx."""
    return parse_size(text, flag, minimum=1)


def _check_args(input_size, batch, scan_op, precision, opset):
    h, w = input_size
    if h < 32 or w < 32 or h > 16384 or w > 16384:
        raise AvssmError(f"--input-size {h}x{w}: height and width must be between 32 and 16384")
    if batch < 1:
        raise AvssmError(f"batch {batch}: must be at least 1")
    if scan_op not in SCAN_OPS:
        raise AvssmError(f"scan op '{scan_op}': expected one of {', '.join(SCAN_OPS)}")
    if precision not in PRECISIONS:
        raise AvssmError(f"precision '{precision}': expected one of {', '.join(PRECISIONS)}")
    if opset < MIN_OPSET:
        raise AvssmError(f"opset {opset}: avssm exports opset {MIN_OPSET} or newer")


def _tensor_infos(values) -> list[TensorInfo]:
    out = []
    for v in values:
        t = v.type.tensor_type
        shape = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
        out.append(TensorInfo(v.name, shape, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name))
    return out


def build_metadata(model, model_name: str, input_size, scan_op: str, precision: str, opset: int, dynamic: bool,
                   weights: str | None = None) -> dict:
    """The avssm metadata (avssm.graph.metadata) of ``model`` exported as ``model_name``: what the model's
    ``default_cfg`` says (classes, normalization, padding) and how it was exported. ``weights``: the
    checkpoint's file name, "random" for a registered model built without one, None when unknown."""
    cfg = model.default_cfg
    return make_metadata(model_name, class_names=cfg.get("class_names"), pad_to=cfg.get("pad_to"),
                         input_meta=cfg.get("input"), input_size=input_size, scan_op=scan_op, precision=precision,
                         opset=opset, dynamic=dynamic, weights=weights)


def _verification_sizes(input_size, dynamic: bool) -> list[tuple[int, int]]:
    sizes = [tuple(input_size)]
    if dynamic:  # a second, different size checks the symbolic shapes
        h, w = input_size
        sizes.append((max(32, (h * 3 // 4) // 16 * 16 + 8), max(32, (w * 2 // 3) // 16 * 16 + 8)))
    return sizes


def verify_onnx(path: str, torch_model, input_size, batch: int, dynamic: bool, precision: str) -> list[dict]:
    """Run the file and PyTorch on the same inputs; max abs / max rel error per output and size.

    Files run on ONNX Runtime CPU, plugin files with avssm's SelectiveScan op; an fp16 plugin file, or any plugin
    file where that op did not build (no C compiler), runs on onnx.reference with avssm's Python SelectiveScan
    (slow: ~17 GB at 1080x1920). fp16 files are compared with the fp32 PyTorch model.
    """
    import onnxruntime as ort
    import torch

    from avssm import native

    model_proto = onnx.load(path)
    plugin_form = read_metadata(model_proto).get("scan_op") == "plugin"
    scan_op = native.ort_scan_op_library() if plugin_form and precision != "fp16" else None
    if plugin_form and scan_op is None:
        from avssm.export.reference_op import reference_session

        session = reference_session(model_proto)
        runtime = "onnx.reference + Python SelectiveScan"
    else:
        options = ort.SessionOptions()
        runtime = "onnxruntime CPU"
        if scan_op is not None:
            options.register_custom_ops_library(str(scan_op))
            runtime = "onnxruntime CPU + avssm SelectiveScan op"
        session = ort.InferenceSession(model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def run(x):
        return session.run(None, {"images": x})

    names = [o.name for o in model_proto.graph.output]
    results = []
    rng = np.random.default_rng(0)
    for size in _verification_sizes(input_size, dynamic):
        x = rng.standard_normal((batch, 3, *size)).astype(np.float32)
        with torch.inference_mode():
            expected = torch_model(torch.from_numpy(x))
        expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
        got = run(x.astype(np.float16) if precision == "fp16" else x)
        for name, e, g in zip(names, expected, got):
            e = e.float().numpy()
            g = np.asarray(g, dtype=np.float32)
            if e.shape != g.shape:
                raise AvssmError(f"verify: output {name} has shape {g.shape} in the file but {e.shape} in PyTorch")
            abs_err = float(np.abs(g - e).max()) if e.size else 0.0
            scale = float(np.abs(e).max()) if e.size else 0.0
            results.append({"size": list(size), "output": name, "max_abs": abs_err,
                            "max_rel": abs_err / scale if scale > 0 else abs_err, "finite": bool(np.isfinite(g).all()),
                            "runtime": runtime})
    return results


def _name_output_dims(proto: onnx.ModelProto, shapes: list[list[int]], dynamic: bool, detector: bool) -> None:
    """Give the outputs their traced sizes (static export) or readable symbolic names (dynamic)."""
    for out, shape in zip(proto.graph.output, shapes):
        dims = out.type.tensor_type.shape.dim
        for i, (dim, size) in enumerate(zip(dims, shape)):
            symbolic = dynamic and (i == 0 or (detector and i == 1))
            if symbolic:
                dim.dim_param = "batch" if i == 0 else "candidates"
            else:
                dim.dim_value = size


def export_onnx(model, output, *, checkpoint=None, input_size=ExportOptions.input_size,
                dynamic: bool = ExportOptions.dynamic, batch: int = ExportOptions.batch,
                scan_op: str = ExportOptions.scan_op, fused: bool = ExportOptions.fused,
                precision: str = ExportOptions.precision,
                opset: int = ExportOptions.opset, verify: bool = False,
                progress: Callable[[str], None] | None = None) -> ExportResult:
    """Export ``model`` (a registered name or an avssm nn.Module) to ``output``.

    ``scan_op="plugin"`` writes one ``trt.plugins::SelectiveScan`` node per scan (TensorRT with the avssm
    plugin); ``"portable"`` replaces them by standard ops (ONNX Runtime, any runtime). ``fused`` (default) writes
    VMamba's four-direction and Vim's two-direction scans as one node of layout cross-2d / bidirectional each, with
    no traversal copies; ``fused=False`` writes the copies as standard ops around a version 1 node, for
    SelectiveScan implementations that predate the layouts. ``precision="fp16"``
    makes the graph fp16 (input too) while the scan's A, D, delta_bias, state and math stay fp32 and the
    boxes/scores outputs are fp32. ``dynamic`` makes batch, height and width symbolic. The file is written
    elsewhere and renamed into place, so a failed export leaves nothing behind.
    """
    import torch

    from avssm.graph.lowering import lower_selective_scan
    from avssm.models import create_model
    from avssm.ops import selective_scan_onnx

    step = progress or (lambda message: None)
    output = Path(output)
    _check_args(input_size, batch, scan_op, precision, opset)
    check_output(output, "--output", inputs={"--checkpoint": checkpoint if isinstance(checkpoint, (str, Path)) else None})

    step("building the model")
    weights = Path(checkpoint).name if isinstance(checkpoint, (str, Path)) else None
    if isinstance(model, str):
        weights = weights or ("random" if checkpoint is None else None)
        model_name, net = model, create_model(model, checkpoint=checkpoint)
    else:
        model_name, net = getattr(model, "model_name", type(model).__name__), model
        if checkpoint is not None:
            from avssm.models import load_checkpoint

            load_checkpoint(net, checkpoint)
    net = net.eval()
    reference = net
    if precision == "fp16":
        import copy

        from avssm.models.layers import to_half

        net = to_half(copy.deepcopy(net))

    class _Exported(torch.nn.Module):
        """The model with fp32 outputs (boxes keep pixel precision in an fp16 graph)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.output_shapes = []

        def forward(self, images):
            out = self.inner(images)
            out = tuple(o.float() for o in out) if isinstance(out, tuple) else (out.float(),)
            self.output_shapes = [list(o.shape) for o in out]  # the trace runs once with real values
            return out if len(out) > 1 else out[0]

    detector = hasattr(net, "class_names")
    output_names = ["boxes", "scores"] if detector else ["logits"]
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {"images": {0: "batch", 2: "height", 3: "width"}}
        for name in output_names:
            dynamic_axes[name] = {0: "batch", 1: "candidates"} if detector else {0: "batch"}
    dtype = torch.float16 if precision == "fp16" else torch.float32
    example = torch.zeros(batch, 3, *input_size, dtype=dtype)

    with faults_as("--output", output), atomic_output(output) as tmp:
        step(f"tracing {model_name} at {input_size[0]}x{input_size[1]}")
        # eval(): the exporter restores the wrapper's train/eval mode into every submodule afterwards
        wrapper = _Exported(net).eval()
        layouts = contextlib.nullcontext() if fused else selective_scan_onnx.unfused_export()
        with selective_scan_onnx.recording_scans() as shapes, layouts, warnings.catch_warnings(), \
                torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings on shape arithmetic are expected
            torch.onnx.export(wrapper, (example,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=["images"], output_names=output_names, dynamic_axes=dynamic_axes,
                              do_constant_folding=True)
        proto = onnx.load(str(tmp))
        _name_output_dims(proto, wrapper.output_shapes, dynamic, detector)
        layouts = layout_counts(proto)
        if scan_op == "portable":
            step("lowering SelectiveScan to standard ops")
            proto = lower_selective_scan(proto, lengths=shapes.lengths, groups=shapes.groups)
        metadata = build_metadata(net, model_name, input_size, scan_op, precision, opset, dynamic, weights)
        del proto.metadata_props[:]
        write_metadata(proto, metadata)
        proto.producer_name, proto.producer_version = "avssm", avssm.__version__
        step("checking the graph")
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        verification = []
        if verify:
            step("verifying against PyTorch")
            verification = verify_onnx(str(tmp), reference, input_size, batch, dynamic, precision)
    nodes = len(proto.graph.node)
    scans = sum(1 for n in proto.graph.node if n.op_type == selective_scan_onnx.OP_TYPE)
    # The outputs already carry their traced (or symbolic) sizes: no shape inference over the whole graph.
    return ExportResult(str(output), output.stat().st_size, nodes, scans, _tensor_infos(proto.graph.input),
                        _tensor_infos(proto.graph.output), metadata, verification, scan_layouts=layouts)
