"""The fused SelectiveScan nodes (layouts cross-2d and bidirectional, avssm/csrc/trt/README.md) on every path that
runs them without a GPU: avssm's ONNX Runtime op, onnx.reference with avssm's Python op, the portable lowering, and
the unfused rewrite TensorRT gets; each against the definitions in avssm.ops.cross_scan / bidirectional_scan. Then
the detectors: what the export writes by default and with --unfused, and that both forms compute the same."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from avssm import native
from avssm.export import export_onnx
from avssm.export.reference_op import reference_session
from avssm.graph.lowering import lower_selective_scan
from avssm.graph.scan_node import LAYOUT_BIDIRECTIONAL, LAYOUT_CROSS_2D, is_scan_node, layout
from avssm.graph.unfuse import has_fused_scans, unfuse_scans
from avssm.models import create_model
from avssm.ops.bidirectional_scan import bidirectional_selective_scan, bidirectional_selective_scan_ref
from avssm.ops.cross_scan import cross_selective_scan, cross_selective_scan_ref
from conftest import tensorrt_parser_problems

needs_op = pytest.mark.skipif(native.ort_scan_op_library() is None,
                              reason="avssm's ONNX Runtime op not built (no C compiler, or AVSSM_CPU_KERNEL=0)")


class Cross(torch.nn.Module):
    def __init__(self, dim, nstate, with_D):
        super().__init__()
        self.A = torch.nn.Parameter(-torch.exp(torch.randn(4 * dim, nstate)))
        self.D = torch.nn.Parameter(torch.randn(4 * dim)) if with_D else None
        self.bias = torch.nn.Parameter(torch.randn(4 * dim))

    def forward(self, u, delta, B, C):
        return cross_selective_scan(u, delta, self.A, B, C, D=self.D, delta_bias=self.bias, delta_softplus=True)

    def reference(self, u, delta, B, C):
        return cross_selective_scan_ref(u, delta, self.A, B, C, D=self.D, delta_bias=self.bias, delta_softplus=True)


class Bidirectional(torch.nn.Module):
    def __init__(self, dim, nstate, gated):
        super().__init__()
        self.A = torch.nn.Parameter(-torch.exp(torch.randn(2 * dim, nstate)))
        self.D = torch.nn.Parameter(torch.randn(2 * dim))
        self.bias = torch.nn.Parameter(torch.randn(2 * dim))
        self.gated = gated

    def forward(self, u, delta, B, C, z):
        return bidirectional_selective_scan(u, delta, self.A, B, C, D=self.D, z=z if self.gated else None,
                                            delta_bias=self.bias, delta_softplus=True)

    def reference(self, u, delta, B, C, z):
        return bidirectional_selective_scan_ref(u, delta, self.A, B, C, D=self.D, z=z if self.gated else None,
                                                delta_bias=self.bias, delta_softplus=True)


# (kind, batch, dim, (H, W) or L, N, option): odd maps, one row, one column, several chunks, N = 1 / 4 / 16
CASES = [("cross", 2, 3, (5, 7), 1, True), ("cross", 1, 4, (1, 37), 4, False), ("cross", 1, 2, (23, 1), 16, True),
         ("cross", 1, 2, (17, 29), 1, True), ("bidirectional", 2, 3, 203, 16, True),
         ("bidirectional", 1, 4, 1, 4, True), ("bidirectional", 1, 2, 70, 1, False)]


def exported(tmp_path, kind, batch, dim, extent, nstate, option, dtype=torch.float32):
    """(ONNX file with one fused node, the module, its example inputs, their names)."""
    torch.manual_seed(0)
    if kind == "cross":
        h, w = extent
        module = Cross(dim, nstate, option)
        args = (torch.randn(batch, dim, h, w), torch.randn(batch, 4, dim, h, w), torch.randn(batch, 4, nstate, h, w),
                torch.randn(batch, 4, nstate, h, w))
        names = ["u", "delta", "B", "C"]
    else:
        module = Bidirectional(dim, nstate, option)
        args = (torch.randn(batch, 2 * dim, extent), torch.randn(batch, 2 * dim, extent),
                torch.randn(batch, 2, nstate, extent), torch.randn(batch, 2, nstate, extent),
                torch.randn(batch, dim, extent))
        names = ["u", "delta", "B", "C", "z"]
    path = tmp_path / f"{kind}.onnx"
    with torch.no_grad():
        torch.onnx.export(module.to(dtype), tuple(a.to(dtype) for a in args), str(path), dynamo=False,
                          opset_version=17, input_names=names)
    return onnx.load(str(path)), module.float(), args, names


def feeds(model, names, args, dtype=np.float32):
    wanted = {i.name for i in model.graph.input}
    return {n: a.numpy().astype(dtype) for n, a in zip(names, args) if n in wanted}


def op_session(model):
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(native.ort_scan_op_library()))
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def rel(got, expected):
    expected = expected.detach().numpy()
    return float(np.abs(np.asarray(got, dtype=np.float32) - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[3]}-N{c[4]}")
def test_export_writes_one_version_2_node_of_the_layout(tmp_path, case):
    model, *_ = exported(tmp_path, *case)
    nodes = [n for n in model.graph.node if is_scan_node(n)]
    assert len(nodes) == 1 and has_fused_scans(model)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs["plugin_version"] == b"2"
    assert layout(nodes[0]) == (LAYOUT_CROSS_2D if case[0] == "cross" else LAYOUT_BIDIRECTIONAL)
    assert all(nodes[0].input)  # no empty-named inputs


@needs_op
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[3]}-N{c[4]}")
def test_onnxruntime_op_runs_the_fused_node_as_defined(tmp_path, case):
    model, module, args, names = exported(tmp_path, *case)
    (y,) = op_session(model).run(None, feeds(model, names, args))
    expected = module.reference(*args)
    assert y.shape == tuple(expected.shape)
    assert rel(y, expected) < 1e-5


@pytest.mark.parametrize("case", CASES[:1] + CASES[4:5], ids=lambda c: c[0])
def test_python_reference_op_runs_the_fused_node(tmp_path, case):
    model, module, args, names = exported(tmp_path, *case)
    (y,) = reference_session(model).run(None, feeds(model, names, args))
    assert rel(y, module.reference(*args)) < 1e-5


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[3]}-N{c[4]}")
def test_portable_lowering_of_the_fused_node(tmp_path, case):
    model, module, args, names = exported(tmp_path, *case)
    lowered = lower_selective_scan(model, chunk=16)
    assert not any(is_scan_node(n) for n in lowered.graph.node)
    session = ort.InferenceSession(lowered.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, feeds(model, names, args))
    assert rel(y, module.reference(*args)) < 1e-5


@pytest.mark.parametrize("kind", ["cross", "bidirectional"])
def test_fp16_fused_node_lowers_with_fp32_math(tmp_path, kind):
    case = next(c for c in CASES if c[0] == kind and c[4] > 1)
    model, module, args, names = exported(tmp_path, *case, dtype=torch.float16)
    lowered = lower_selective_scan(model, chunk=16)
    session = ort.InferenceSession(lowered.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, feeds(model, names, args, np.float16))
    assert y.dtype == np.float16
    expected = module.reference(*(a.half().float() for a in args))
    assert rel(y, expected) < 2e-3


@needs_op
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[3]}-N{c[4]}")
def test_unfused_rewrite_holds_only_version_1_nodes_and_computes_the_same(tmp_path, case):
    model, module, args, names = exported(tmp_path, *case)
    unfused = unfuse_scans(model)
    onnx.checker.check_model(unfused)
    nodes = [n for n in unfused.graph.node if is_scan_node(n)]
    assert len(nodes) == 1 and not has_fused_scans(unfused)
    assert {a.name: a.s for a in nodes[0].attribute if a.name == "plugin_version"} == {"plugin_version": b"1"}
    (y,) = op_session(unfused).run(None, feeds(model, names, args))
    assert rel(y, module.reference(*args)) < 1e-5


@needs_op
def test_onnxruntime_op_names_the_tensor_and_the_layout(tmp_path):
    model, module, args, names = exported(tmp_path, *CASES[0])
    for value in [*model.graph.input, *model.graph.output]:  # ONNX Runtime would check the static shapes first
        value.type.tensor_type.ClearField("shape")
    del model.graph.value_info[:]
    bad = feeds(model, names, args)
    bad["B"] = bad["B"][:, :, :, :4]
    with pytest.raises(Exception, match=r"SelectiveScan: B has shape \(2, 4, 1, 4, 7\), expected \(2, 4, 1, 5, 7\)"):
        op_session(model).run(None, bad)
    node = next(n for n in model.graph.node if is_scan_node(n))
    next(a for a in node.attribute if a.name == "layout").i = 7
    with pytest.raises(Exception, match="layout 7 is not 0 .sequence., 1 .cross-2d. or 2 .bidirectional."):
        op_session(model)


SMALL = {"vmamba_tiny_det": dict(depths=(1, 1, 2, 1), embed_dim=16), "vim_tiny_det": dict(embed_dim=32, depth=2)}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_detectors_export_fused_by_default_and_unfused_on_request(tmp_path, name):
    torch.manual_seed(0)
    net = create_model(name, backbone_overrides=SMALL[name]).eval()
    fused = onnx.load(export_onnx(net, tmp_path / "fused.onnx", input_size=(64, 96)).path)
    unfused = onnx.load(export_onnx(net, tmp_path / "unfused.onnx", input_size=(64, 96), fused=False).path)
    expected = LAYOUT_CROSS_2D if name.startswith("vmamba") else LAYOUT_BIDIRECTIONAL
    assert {layout(n) for n in fused.graph.node if is_scan_node(n)} == {expected}
    assert not has_fused_scans(unfused) and any(is_scan_node(n) for n in unfused.graph.node)
    # what avssm build hands TensorRT's parser for a fused file
    assert tensorrt_parser_problems(unfuse_scans(fused)) == []
    # the fused file has none of the copies: no flips at all (the unfused one flips per block) and fewer nodes
    assert flips(fused) == 0 and flips(unfused) > 0
    assert len(fused.graph.node) < len(unfused.graph.node)


def flips(model) -> int:
    """Activations reversed along their last axis: Slice nodes on a computed tensor with axes [-1], steps [-1]
    (Vim's anti-causal convolution reverses its 4 weights, a constant)."""
    values = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            values[n.output[0]] = onnx.numpy_helper.to_array(n.attribute[0].t)
    return sum(1 for n in model.graph.node if n.op_type == "Slice" and len(n.input) == 5 and n.input[0] not in values
               and np.array_equal(values.get(n.input[3], [0]), [-1])
               and np.array_equal(values.get(n.input[4], [0]), [-1]))


@needs_op
@pytest.mark.parametrize("name", sorted(SMALL))
def test_fused_and_unfused_files_agree_with_pytorch(tmp_path, name):
    torch.manual_seed(0)
    net = create_model(name, backbone_overrides=SMALL[name]).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 96, 160)).astype(np.float32)
    with torch.inference_mode():
        expected = net(torch.from_numpy(x))
    outputs = {}
    for fused in (True, False):
        for scan_op in ("plugin", "portable"):
            path = export_onnx(net, tmp_path / f"{fused}{scan_op}.onnx", input_size=(96, 160), fused=fused,
                               scan_op=scan_op).path
            model = onnx.load(path)
            outputs[fused, scan_op] = op_session(model).run(None, {"images": x})
    for (fused, scan_op), got in outputs.items():
        for g, e in zip(got, expected):
            assert rel(g, e) < 1e-5, (fused, scan_op)
    for g, e in zip(outputs[True, "plugin"], outputs[False, "plugin"]):
        assert rel(g, torch.from_numpy(e)) < 1e-5


BIDIRECTIONAL_EXPORT = """
import io, torch
from avssm.ops.bidirectional_scan import bidirectional_selective_scan
class M(torch.nn.Module):
    def __init__(s, gate):
        super().__init__(); s.A = torch.nn.Parameter(-torch.rand(8, 4)); s.gate = gate
    def forward(s, u):
        B = u.reshape(1, 2, 4, -1)
        return bidirectional_selective_scan(u, u.sigmoid(), s.A, B, B, z=u[:, :4] if s.gate else None)
for gate in (True, False):
    torch.onnx.export(M(gate), (torch.randn(1, 8, 10),), io.BytesIO(), dynamo=False, opset_version=17)
"""


def test_a_bidirectional_node_exports_with_its_type_and_no_exporter_warning():
    # Without the node's output type the exporter printed "The shape inference of trt.plugins::SelectiveScan
    # type is missing" once per node: 24 lines for a Vim model.
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", BIDIRECTIONAL_EXPORT], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "shape inference of trt.plugins::SelectiveScan" not in r.stderr
