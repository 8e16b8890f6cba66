import glob
import os
import shutil
import subprocess
import sys

import onnx
import pytest
import torch

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory):
    """A small detector (vim_tiny_det, 32 wide, 2 blocks, random weights) exported portable with dynamic
    batch and size at 96x160, for runtime tests."""
    from avssm.export import export_onnx
    from avssm.models import create_model

    model = create_model("vim_tiny_det", backbone_overrides=dict(embed_dim=32, depth=2))
    model.model_name = "vim_tiny_det"
    path = tmp_path_factory.mktemp("model") / "det.onnx"
    export_onnx(model, path, input_size=(96, 160), dynamic=True, scan_op="portable")
    return path


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: the error relative to the reference's scale."""
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp(min=1e-30)).item()


def make_inputs(batch, dim, length, n, groups, large_delta=False, dtype=torch.float32):
    u = torch.randn(batch, dim, length, dtype=dtype)
    delta = (torch.randn(batch, dim, length) * (4.0 if large_delta else 0.5)).to(dtype)
    A = -torch.exp(torch.randn(dim, n))  # trained-model range: |A| ~ 0.05 .. 20
    B = torch.randn(batch, groups, n, length, dtype=dtype)
    C = torch.randn(batch, groups, n, length, dtype=dtype)
    D = torch.randn(dim)
    z = torch.randn(batch, dim, length, dtype=dtype)
    delta_bias = torch.randn(dim) * 0.5
    return u, delta, A, B, C, D, z, delta_bias


# Standard ONNX ops avssm's exported graphs use, each one supported by TensorRT 10's ONNX parser (checked on
# 2026-12-02 against onnx-tensorrt's docs/operators.md and onnxOpImporters.cpp, release 10.1). TensorRT cannot
# run here, so this is the check that a change to the models or the export does not bring in an op the
# parser rejects: a new op fails it until it has been checked there and added.
TENSORRT_PARSER_OPS = {
    "Abs", "Add", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose",
    "DequantizeLinear", "Div", "Equal", "Erf", "Exp", "Expand", "Gather", "Identity", "InstanceNormalization",
    "LayerNormalization", "Log", "MatMul", "MaxPool", "Min", "Mod", "Mul", "Neg", "Pad", "Pow", "QuantizeLinear",
    "Range", "ReduceMean", "ReduceSum", "Relu", "Reshape", "Resize", "Scan", "Shape", "Sigmoid", "Slice", "Split",
    "Sqrt", "Sub", "Transpose", "Unsqueeze", "Where",
}
# Inputs the parser needs as initializers or constants (same document): op -> input index.
TENSORRT_CONSTANT_INPUTS = {"Slice": 3, "Squeeze": 1, "Unsqueeze": 1, "Pad": 3, "ReduceSum": 1, "CumSum": 1, "TopK": 1}
TENSORRT_RESIZE_MODES = {"nearest", "linear", "cubic"}
TENSORRT_RESIZE_COORDINATES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}


def tensorrt_parser_problems(model: onnx.ModelProto) -> list[str]:
    problems = []
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if not 9 <= opset <= 20:  # TensorRT 10 parses opsets 9 to 20
        problems.append(f"opset {opset}")

    def walk(graph, outer_constants):
        constants = set(outer_constants) | {t.name for t in graph.initializer}
        constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
        for node in graph.node:
            if node.domain not in ("", "ai.onnx"):
                continue  # the plugin's SelectiveScan: tests/test_native.py checks the plugin itself
            if node.op_type not in TENSORRT_PARSER_OPS:
                problems.append(f"{node.op_type} ({node.name}) not among the ops checked against TensorRT's parser")
            index = TENSORRT_CONSTANT_INPUTS.get(node.op_type)
            if index is not None and len(node.input) > index and node.input[index] not in ("", *constants):
                problems.append(f"{node.op_type} ({node.name}) input {index} is not a constant")
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "Resize":
                mode = attributes.get("mode", b"nearest").decode()
                coordinates = attributes.get("coordinate_transformation_mode", b"half_pixel").decode()
                if mode not in TENSORRT_RESIZE_MODES or coordinates not in TENSORRT_RESIZE_COORDINATES:
                    problems.append(f"Resize ({node.name}) mode {mode}, coordinates {coordinates}")
            if node.op_type == "LayerNormalization" and any(node.output[1:]):
                problems.append(f"LayerNormalization ({node.name}) uses more than its first output")
            for graph_attribute in (a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH):
                walk(graph_attribute, constants)

    walk(model.graph, set())
    return problems


def cuda_include():
    for root in [os.environ.get("CUDA_HOME", ""), *sorted(glob.glob("/usr/local/cuda*"), reverse=True)]:
        if root and os.path.isfile(os.path.join(root, "include", "cuda_runtime_api.h")):
            return os.path.join(root, "include")
    return None


def compile_on_cpu(tmp_path_factory, name, *sources, native=()):
    """tests/native/<name>.cpp built with tests/native/cuda_on_cpu.h, which runs CUDA kernels' own source on the
    CPU (one thread per CUDA thread), with ``sources`` (paths under avssm/csrc) and ``native`` (file names in
    tests/native) linked in."""
    if shutil.which("c++") is None or cuda_include() is None:
        pytest.skip("needs a C++20 compiler and CUDA headers")
    probe = subprocess.run(["c++", "-std=c++20", "-fsyntax-only", "-x", "c++", "-"], input="#include <barrier>\n",
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"the C++ compiler has no C++20 <barrier>: {probe.stderr.strip()[:200]}")
    exe = tmp_path_factory.mktemp(name) / name
    here = os.path.dirname(__file__)
    r = subprocess.run(["c++", "-std=c++20", "-O2", "-pthread", "-Wall", "-Wextra", "-Wno-unknown-pragmas", "-I",
                        os.path.join(here, "..", "avssm", "csrc", "include"), "-isystem", cuda_include(),
                        os.path.join(here, "native", f"{name}.cpp"),
                        *(os.path.join(here, "..", "avssm", "csrc", source) for source in sources),
                        *(os.path.join(here, "native", source) for source in native), "-o", str(exe)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    return exe


def run_capped(code: str, *args, cap: int = 1 << 30) -> str:
    """Python ``code`` in a child whose data segment is capped at ``cap`` bytes (RLIMIT_DATA): what it printed.
    A reader that allocated what a hostile file claims fails there with MemoryError instead of taking the
    machine's memory; one that checks sizes first runs as usual."""
    prelude = f"import resource\nresource.setrlimit(resource.RLIMIT_DATA, ({cap}, {cap}))\n"
    result = subprocess.run([sys.executable, "-c", prelude + code, *map(str, args)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()
