"""avssm.compat: the stand-in for mamba_ssm's compiled ``selective_scan_cuda`` module keeps its contract (outputs,
per-chunk states, gradients, the caller's dz buffer), so code written against it runs unmodified on a CPU."""
import sys

import pytest
import torch

from avssm import compat
from avssm.ops import selective_scan_ref


@pytest.fixture
def kernel():
    compat.install()
    sys.modules.pop("selective_scan_cuda", None)
    import selective_scan_cuda

    yield selective_scan_cuda
    sys.modules.pop("selective_scan_cuda", None)


def inputs(batch=2, dim=4, n=3, length=4100, groups=2, constant_bc=False):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(batch, dim, length, generator=g)
    delta = torch.rand(batch, dim, length, generator=g) * 0.1
    A = -torch.rand(dim, n, generator=g) - 0.1
    shape = (dim, n) if constant_bc else (batch, groups, n, length)
    B, C = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    D, z = torch.randn(dim, generator=g), torch.randn(batch, dim, length, generator=g)
    bias = torch.randn(dim, generator=g) * 0.1
    return u, delta, A, B, C, D, z, bias


def as_variable(t, batch, length):
    return t if t.dim() == 4 else t[None, :, :, None].expand(batch, -1, -1, length)


def test_the_stand_in_is_served_only_where_the_real_module_is_missing(tmp_path, monkeypatch):
    compat.install()
    compat.install()  # idempotent
    assert sum(isinstance(f, compat._StandInFinder) for f in sys.meta_path) == 1
    (tmp_path / "selective_scan_cuda.py").write_text("REAL = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("selective_scan_cuda", None)
    import selective_scan_cuda

    assert getattr(selective_scan_cuda, "REAL", False)  # a built extension on the path wins
    sys.modules.pop("selective_scan_cuda", None)


@pytest.mark.parametrize("constant_bc", [False, True])
def test_fwd_returns_the_output_the_gated_output_and_the_chunk_states(kernel, constant_bc):
    u, delta, A, B, C, D, z, bias = inputs(constant_bc=constant_bc)
    Bv, Cv = as_variable(B, 2, 4100), as_variable(C, 2, 4100)
    out, x, out_z = kernel.fwd(u, delta, A, B, C, D, z, bias, True)
    ref, last = selective_scan_ref(u, delta, A, Bv, Cv, D, None, bias, True, return_last_state=True)
    assert out.dtype == u.dtype and x.dtype == torch.float32 and x.shape == (2, 4, 3, 6)  # 4100 tokens: 3 chunks
    assert (out - ref).abs().max() < 1e-5
    assert (out_z - selective_scan_ref(u, delta, A, Bv, Cv, D, z, bias, True)).abs().max() < 1e-5
    assert (x[:, :, -1, 1::2] - last).abs().max() < 1e-4 * last.abs().max()  # what callers read as last_state
    for chunk, end in enumerate((2048, 4096)):
        _, state = selective_scan_ref(u[..., :end], delta[..., :end], A, Bv[..., :end], Cv[..., :end], None, None,
                                      bias, True, return_last_state=True)
        assert (x[:, :, chunk, 1::2] - state).abs().max() < 1e-4 * state.abs().max()
        dt = torch.nn.functional.softplus(delta[..., :end] + bias[:, None]).sum(-1)
        assert torch.allclose(x[:, :, chunk, 0::2], torch.exp(dt[..., None] * A), rtol=1e-4)
    out2, x2 = kernel.fwd(u, delta, A, B, C, None, None, None, False)  # no z: two results
    assert (out2 - selective_scan_ref(u, delta, A, Bv, Cv)).abs().max() < 1e-5


def test_bwd_gives_the_gradients_of_the_reference_and_fills_the_callers_dz(kernel):
    u, delta, A, B, C, D, z, bias = (t[..., :300] if t.dim() == 3 or t.dim() == 4 else t
                                     for t in inputs(length=300))
    leaves = [t.clone().requires_grad_() for t in (u, delta, A, B, C, D, z, bias)]
    ref = selective_scan_ref(*leaves[:6], leaves[6], leaves[7], True)
    dout = torch.randn_like(ref)
    expected = torch.autograd.grad(ref, leaves, dout)
    out, x, out_z = kernel.fwd(u, delta, A, B, C, D, z, bias, True)
    dz = torch.full_like(z, float("nan"))
    result = kernel.bwd(u, delta, A, B, C, D, z, bias, dout, x, out, dz, True, True)
    du, ddelta, dA, dB, dC, dD, dbias, dz_out, recomputed = result
    assert dz_out is dz  # written into the caller's buffer, as mamba_inner_fn expects
    for name, got, want in zip(["u", "delta", "A", "B", "C", "D", "delta_bias", "z"],
                               [du, ddelta, dA, dB, dC, dD, dbias, dz], [*expected[:6], expected[7], expected[6]]):
        assert got.shape == want.shape and (got - want).abs().max() < 1e-4 * (1 + want.abs().max()), name
    assert (recomputed - out_z).abs().max() < 1e-5
    plain = kernel.bwd(u, delta, A, B, C, None, None, None, torch.randn_like(out), x, out, None, False, False)
    assert len(plain) == 7 and plain[5] is None and plain[6] is None


class ScanLikeMambaSsm(torch.autograd.Function):
    """An autograd.Function written the way mamba_ssm's SelectiveScanFn calls the compiled module (fwd in forward,
    bwd in backward, last state from x), to show such code runs unchanged on the stand-in."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias):
        import selective_scan_cuda

        out, x, *rest = selective_scan_cuda.fwd(u, delta, A, B, C, D, z, delta_bias, True)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, x, out)
        return rest[0], x[:, :, -1, 1::2]

    @staticmethod
    def backward(ctx, dout, _):
        import selective_scan_cuda

        u, delta, A, B, C, D, z, delta_bias, x, out = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, dbias, dz = selective_scan_cuda.bwd(u, delta, A, B, C, D, z, delta_bias, dout,
                                                                       x, out, None, True, False)
        return du, ddelta, dA, dB, dC, dD, dz, dbias


def test_a_third_party_autograd_function_trains_on_the_cpu(kernel):
    leaves = [t.clone().requires_grad_() for t in inputs(length=64)]
    out, last = ScanLikeMambaSsm.apply(*leaves)
    out.square().sum().backward()
    got = [t.grad.clone() for t in leaves]
    fresh = [t.detach().clone().requires_grad_() for t in leaves]
    ref = selective_scan_ref(*fresh[:6], fresh[6], fresh[7], True)
    ref.square().sum().backward()
    for a, b in zip(got, fresh):
        assert (a - b.grad).abs().max() < 1e-4 * (1 + b.grad.abs().max())


def test_what_is_not_covered_is_one_line_naming_it(kernel):
    u, delta, A, B, C, D, z, bias = inputs(length=8)
    with pytest.raises(kernel.NotCoveredError) as e:
        kernel.fwd(u, delta, torch.complex(A, A), B, C, D, z, bias, True)
    assert len(str(e.value).splitlines()) == 1 and "complex" in str(e.value) and "covered:" in str(e.value)


# ------------------------------------------------------------------------------------------- causal-conv1d

@pytest.fixture
def conv():
    compat.install()
    for name in ("causal_conv1d_cuda", "causal_conv1d", "causal_conv1d.cpp_functions"):
        sys.modules.pop(name, None)
    import causal_conv1d_cuda

    yield causal_conv1d_cuda
    for name in ("causal_conv1d_cuda", "causal_conv1d", "causal_conv1d.cpp_functions"):
        sys.modules.pop(name, None)


def conv_reference(x, weight, bias, initial=None, silu=False):
    """out[t] = bias + sum_k weight[k] * x[t - (width - 1) + k], the inputs before t = 0 from ``initial``."""
    width = weight.shape[-1]
    padded = torch.cat([initial if initial is not None else x.new_zeros(*x.shape[:2], width - 1), x], -1)
    out = sum(weight[None, :, k, None] * padded[..., k:k + x.shape[-1]] for k in range(width))
    out = out + (bias[None, :, None] if bias is not None else 0)
    return torch.nn.functional.silu(out) if silu else out


def conv_inputs(length=20):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(2, 6, length, generator=g), torch.randn(6, 4, generator=g), torch.randn(6, generator=g),
            torch.randn(2, 6, 3, generator=g))


def test_every_release_signature_of_the_convolution_gives_the_same_result(conv):
    x, w, b, init = conv_inputs()
    want = conv_reference(x, w, b, silu=True)
    assert (conv.causal_conv1d_fwd(x, w, b, True) - want).abs().max() < 1e-5  # 1.0
    assert (conv.causal_conv1d_fwd(x, w, b, None, True) - want).abs().max() < 1e-5  # 1.1
    final = torch.empty(2, 6, 3)
    got = conv.causal_conv1d_fwd(x, w, b, None, init, final, True)  # 1.2 - 1.4
    assert (got - conv_reference(x, w, b, init, silu=True)).abs().max() < 1e-5 and torch.equal(final, x[..., -3:])
    out = torch.empty_like(x)
    assert conv.causal_conv1d_fwd(x, w, b, None, None, out, None, True) is None  # 1.5 - 1.6, in place
    assert (out - want).abs().max() < 1e-5
    with pytest.raises(conv.NotCoveredError, match="seq_idx"):
        conv.causal_conv1d_fwd(x, w, b, torch.zeros(2, 20, dtype=torch.int32), True)


def test_every_release_signature_of_the_backward_gives_the_reference_gradients(conv):
    x, w, b, init = conv_inputs()
    leaves = [t.clone().requires_grad_() for t in (x, w, b, init)]
    dout = torch.randn_like(x)
    want = torch.autograd.grad(conv_reference(*leaves, silu=True), leaves, dout)
    no_init = [t.clone().requires_grad_() for t in (x, w, b)]
    want_plain = torch.autograd.grad(conv_reference(*no_init, silu=True), no_init, dout)

    def close(got, expected):
        return all((g - e).abs().max() < 1e-4 for g, e in zip(got, expected))

    assert close(conv.causal_conv1d_bwd(x, w, b, dout, None, True), want_plain)  # 1.0
    assert close(conv.causal_conv1d_bwd(x, w, b, dout, None, None, True), want_plain)  # 1.1
    got = conv.causal_conv1d_bwd(x, w, b, dout, None, init, None, None, True, True)  # 1.2 - 1.4
    assert close(got, want)
    buffers = [torch.full_like(t, float("nan")) for t in (x, w, b, init)]
    assert conv.causal_conv1d_bwd(x, w, b, dout, None, init, None, *buffers, True) is None  # 1.5 - 1.6
    assert close(buffers, want)


def test_decoding_step_by_step_equals_the_whole_sequence(conv):
    x, w, b, _ = conv_inputs(length=9)
    state = torch.zeros(2, 6, 3)
    steps = [conv.causal_conv1d_update(x[..., t], state, w, b, True) for t in range(9)]  # 1.0 - 1.4 form
    assert (torch.stack(steps, -1) - conv_reference(x, w, b, silu=True)).abs().max() < 1e-5
    assert torch.equal(state, x[..., -3:])


def test_the_package_stand_in_serves_mamba_ssms_imports(conv, tmp_path, monkeypatch):
    import causal_conv1d
    from causal_conv1d import causal_conv1d_fn
    from causal_conv1d.cpp_functions import causal_conv1d_bwd_function, causal_conv1d_fwd_function

    assert causal_conv1d.__version__ == "avssm"
    x, w, b, _ = conv_inputs()
    leaf = x.clone().requires_grad_()
    out = causal_conv1d_fn(leaf, w, b, activation="silu")  # differentiable as it is
    out.sum().backward()
    assert (out - conv_reference(x, w, b, silu=True)).abs().max() < 1e-5 and leaf.grad is not None
    assert (causal_conv1d_fwd_function(x, w, b, None, None, None, True) - out).abs().max() < 1e-6
    dx, dw, db, dinit = causal_conv1d_bwd_function(x, w, b, torch.ones_like(x), None, None, None, None, False, True)
    assert (dx - leaf.grad).abs().max() < 1e-5 and dinit is None
    # An installed package wins over the stand-in.
    for name in ("causal_conv1d", "causal_conv1d.cpp_functions"):
        sys.modules.pop(name, None)
    (tmp_path / "causal_conv1d").mkdir()
    (tmp_path / "causal_conv1d" / "__init__.py").write_text("__version__ = 'real'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import causal_conv1d as real

    assert real.__version__ == "real"




def test_mamba_ssms_block_on_its_fast_path_matches_its_references():
    """mamba_ssm's own Mamba block (mamba_inner_fn, causal_conv1d, selective_scan_cuda: all avssm's stand-ins)
    against its reference path (nn.Conv1d and its selective_scan_ref). Runs where mamba_ssm is installed from its
    source distribution without CUDA (docs/models.md); skipped elsewhere."""
    compat.install()
    ms = pytest.importorskip("mamba_ssm.modules.mamba_simple")
    from mamba_ssm.ops.selective_scan_interface import selective_scan_ref as mamba_ref

    torch.manual_seed(0)
    block = ms.Mamba(d_model=16, d_state=8, d_conv=4, expand=2, use_fast_path=True)
    x = torch.randn(2, 300, 16, requires_grad=True)
    block(x).square().sum().backward()
    fast = [p.grad.clone() for p in block.parameters()] + [x.grad.clone()]
    out_fast = block(x).detach()
    block.zero_grad()
    x.grad = None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ms, "causal_conv1d_fn", None)
        patch.setattr(ms, "selective_scan_fn", mamba_ref)
        block.use_fast_path = False
        out_ref = block(x)
        out_ref.square().sum().backward()
    ref = [p.grad.clone() for p in block.parameters()] + [x.grad.clone()]
    assert (out_fast - out_ref).abs().max() < 1e-5 * out_ref.abs().max()
    for a, b in zip(fast, ref):
        assert (a - b).abs().max() < 1e-5 * (1 + b.abs().max())


# ------------------------------------------------------------------------------------------- export

FAKE_INTERFACE = '''
"""A module in the style of mamba_ssm.ops.selective_scan_interface: an autograd.Function over the compiled
module, with no ONNX symbolic."""
import torch
import selective_scan_cuda
from einops import rearrange


class SelectiveScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                return_last_state=False):
        if B.dim() == 3:  # einops, as mamba_ssm does: the exporter cannot inline what it traces to
            B = rearrange(B, "b n l -> b 1 n l")
            C = rearrange(C, "b n l -> b 1 n l")
        out, x, *rest = selective_scan_cuda.fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        last_state = x[:, :, -1, 1::2]
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, x, out)
        ctx.delta_softplus = delta_softplus
        out = rest[0] if z is not None else out
        return (out, last_state) if return_last_state else out

    @staticmethod
    def backward(ctx, dout):
        u, delta, A, B, C, D, z, delta_bias, x, out = ctx.saved_tensors
        grads = selective_scan_cuda.bwd(u, delta, A, B, C, D, z, delta_bias, dout, x, out, None,
                                        ctx.delta_softplus, False)
        return (*grads[:5], grads[5], grads[7] if z is not None else None, grads[6], None, None)


def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                      return_last_state=False):
    return SelectiveScanFn.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
'''


class TinyMambaStyleLayer(torch.nn.Module):
    """A user's layer on a selective_scan_fn: projections, the scan with D, z and delta_bias, an output."""

    def __init__(self, scan_fn, dim=8, n=4):
        super().__init__()
        self.scan_fn, self.n = scan_fn, n
        self.in_proj = torch.nn.Linear(dim, 2 * dim)
        self.x_proj = torch.nn.Linear(dim, dim + 2 * n)
        self.A_log = torch.nn.Parameter(torch.rand(dim, n))
        self.D = torch.nn.Parameter(torch.ones(dim))
        self.bias = torch.nn.Parameter(torch.rand(dim) * 0.1)

    def forward(self, x):  # (batch, L, dim)
        u, z = self.in_proj(x).transpose(1, 2).chunk(2, dim=1)
        delta, B, C = self.x_proj(x).transpose(1, 2).split([u.shape[1], self.n, self.n], dim=1)
        return self.scan_fn(u.contiguous(), delta.contiguous(), -torch.exp(self.A_log), B.contiguous(),
                            C.contiguous(), self.D, z.contiguous(), self.bias, True)


def test_code_written_against_mamba_ssm_exports_with_a_scan_node(tmp_path, monkeypatch):
    import numpy as np
    import onnx
    import onnxruntime as ort

    from avssm import native
    from avssm.graph.lowering import lower_selective_scan

    package = tmp_path / "mamba_ssm"
    (package / "ops").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "ops" / "__init__.py").write_text("")
    (package / "ops" / "selective_scan_interface.py").write_text(FAKE_INTERFACE)
    saved = {k: v for k, v in sys.modules.items() if k.startswith(("mamba_ssm", "selective_scan_cuda"))}
    for name in saved:
        del sys.modules[name]
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        compat.install()
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        layer = TinyMambaStyleLayer(selective_scan_fn).eval()
        x = torch.randn(1, 40, 8)
        with torch.no_grad():
            expected = layer(x).numpy()
            path = tmp_path / "layer.onnx"
            torch.onnx.export(layer, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    finally:
        for name in [k for k in sys.modules if k.startswith(("mamba_ssm", "selective_scan_cuda"))]:
            del sys.modules[name]
        sys.modules.update(saved)
    model = onnx.load(str(path))
    assert sum(n.op_type == "SelectiveScan" for n in model.graph.node) == 1
    portable = ort.InferenceSession(lower_selective_scan(model).SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    assert np.abs(portable - expected).max() < 1e-4 * np.abs(expected).max()
    if native.ort_scan_op_library() is not None:
        options = ort.SessionOptions()
        options.register_custom_ops_library(str(native.ort_scan_op_library()))
        plugin = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(
            None, {"x": x.numpy()})[0]
        assert np.abs(plugin - expected).max() < 1e-4 * np.abs(expected).max()


def export_portable(module, x):
    """``module`` exported on ``x`` (its scans as SelectiveScan nodes), and the relative max error of its portable
    form on ONNX Runtime against PyTorch."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from avssm.graph.lowering import lower_selective_scan

    buffer = __import__("io").BytesIO()
    with torch.no_grad():
        expected = module(x).numpy()
        torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17, input_names=["x"])
    model = onnx.load_from_string(buffer.getvalue())
    got = ort.InferenceSession(lower_selective_scan(model).SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    return model, float(np.abs(got - expected).max() / np.abs(expected).max())


def test_mamba_ssms_blocks_export_on_both_paths():
    """mamba_ssm's Mamba block on its fast path (MambaInnerFn) and its slow path (selective_scan_fn), exported:
    one SelectiveScan node each, portable form on ONNX Runtime within 1e-4 of PyTorch. Skipped without
    mamba_ssm."""

    compat.install()
    ms = pytest.importorskip("mamba_ssm.modules.mamba_simple")
    torch.manual_seed(0)
    net = torch.nn.Sequential(ms.Mamba(d_model=16, d_state=8, d_conv=4, expand=2, use_fast_path=True),
                              ms.Mamba(d_model=16, d_state=8, d_conv=4, expand=2, use_fast_path=False)).eval()
    model, error = export_portable(net, torch.randn(1, 64, 16))
    assert sum(n.op_type == "SelectiveScan" for n in model.graph.node) == 2 and error < 1e-4


def test_mamba_ssms_reference_scan_exports_as_one_node_not_a_loop():
    """selective_scan_ref is a Python loop over the sequence: exported as written it is one set of ops per step.
    Under export it becomes one SelectiveScan node; outside export it runs as written."""

    compat.install()
    interface = pytest.importorskip("mamba_ssm.ops.selective_scan_interface")
    torch.manual_seed(0)
    layer = TinyMambaStyleLayer(interface.selective_scan_ref).eval()
    assert layer.scan_fn.__wrapped__.__module__ == interface.__name__  # the reference itself, outside export
    model, error = export_portable(layer, torch.randn(1, 40, 8))
    assert sum(n.op_type == "SelectiveScan" for n in model.graph.node) == 1 and len(model.graph.node) < 60
    assert error < 1e-4


def inner_reference(xz, conv_w, conv_b, x_proj_w, delta_proj_w, A, D, delta_bias):
    """mamba_ssm's fused inner computation written out: causal conv + SiLU, x_proj, delta_proj, the gated scan."""
    rank, n = delta_proj_w.shape[1], A.shape[1]
    x, z = xz.chunk(2, dim=1)
    x = conv_reference(x, conv_w[:, 0], conv_b, silu=True)
    dbl = torch.einsum("bdl,rd->brl", x, x_proj_w)
    delta = torch.einsum("dr,brl->bdl", delta_proj_w, dbl[:, :rank])
    B, C = dbl[:, None, rank:rank + n], dbl[:, None, rank + n:]
    return x, delta, B, C, z


def test_the_export_routes_of_the_fused_inner_functions_compute_what_they_replace():
    from avssm.compat.mamba_ssm import export_bimamba_inner, export_mamba_inner, export_mamba_inner_no_out_proj
    from avssm.compat.selective_scan_cuda import NotCoveredError

    g = torch.Generator().manual_seed(2)
    d, n, rank, L = 8, 4, 2, 30
    xz = torch.randn(2, 2 * d, L, generator=g)
    conv_w, conv_b = torch.randn(d, 1, 4, generator=g), torch.randn(d, generator=g)
    x_proj_w, delta_proj_w = torch.randn(rank + 2 * n, d, generator=g), torch.randn(d, rank, generator=g)
    out_w, out_b = torch.randn(5, d, generator=g), torch.randn(5, generator=g)
    A, A_b = -torch.rand(d, n, generator=g) - 0.1, -torch.rand(d, n, generator=g) - 0.1
    D, bias = torch.randn(d, generator=g), torch.randn(d, generator=g) * 0.1
    x, delta, B, C, z = inner_reference(xz, conv_w, conv_b, x_proj_w, delta_proj_w, A, D, bias)
    y = selective_scan_ref(x, delta, A, B, C, D, z, bias, True)
    got = export_mamba_inner_no_out_proj(xz, conv_w, conv_b, x_proj_w, delta_proj_w, A, None, None, D, bias)
    assert (got - y).abs().max() < 1e-4 * y.abs().max()
    want = torch.nn.functional.linear(y.transpose(1, 2), out_w, out_b)
    got = export_mamba_inner(xz, conv_w, conv_b, x_proj_w, delta_proj_w, out_w, out_b, A, None, None, D, bias)
    assert (got - want).abs().max() < 1e-4 * want.abs().max()
    y_b = selective_scan_ref(x.flip(-1), delta.flip(-1), A_b, B.flip(-1), C.flip(-1), D, z.flip(-1), bias, True)
    want = torch.nn.functional.linear((y + y_b.flip(-1)).transpose(1, 2), out_w, out_b)
    got = export_bimamba_inner(xz, conv_w, conv_b, x_proj_w, delta_proj_w, out_w, out_b, A, A_b, None, None, D, bias)
    assert (got - want).abs().max() < 1e-4 * want.abs().max()
    with pytest.raises(NotCoveredError, match="RMS weights"):
        export_mamba_inner(xz, conv_w, conv_b, x_proj_w, delta_proj_w, out_w, out_b, A, None, None, D, bias, None,
                           None, True, 1, torch.ones(n))


# ------------------------------------------------------------------------------------------- Triton norms

def test_the_fused_add_norm_stand_in_keeps_the_kernels_dtypes_and_values():
    from avssm.compat.layer_norm import add_norm
    from avssm.compat.selective_scan_cuda import NotCoveredError

    g = torch.Generator().manual_seed(3)
    x, res = torch.randn(3, 5, 16, generator=g).half(), torch.randn(3, 5, 16, generator=g).half()
    w, b = torch.randn(16, generator=g), torch.randn(16, generator=g)
    s = x.float() + res.float()
    y, out_res = add_norm(x, w, b, residual=res, eps=1e-5, prenorm=True, is_rms_norm=True)
    want = s * torch.rsqrt(s.square().mean(-1, keepdim=True) + 1e-5) * w + b
    assert y.dtype == torch.half and out_res.dtype == torch.half and (y.float() - want).abs().max() < 1e-2
    y, out_res = add_norm(x, w, b, eps=1e-5, prenorm=True, residual_in_fp32=True)
    assert out_res.dtype == torch.float32 and torch.equal(out_res, x.float())
    assert (y.float() - torch.nn.functional.layer_norm(x.float(), (16,), w, b, 1e-5)).abs().max() < 1e-2
    with pytest.raises(NotCoveredError, match="x1/weight1/bias1"):
        add_norm(x, w, b, x1=x)


def test_mamba_ssms_triton_norms_and_mixer_model_run_and_export_on_the_cpu():
    """mamba_ssm's layer_norm_fn / rms_norm_fn against its own references, and its MixerModel with
    fused_add_norm and RMSNorm: trains on the CPU, exports with one SelectiveScan node per layer. Skipped
    without mamba_ssm."""
    import io

    import numpy as np
    import onnx
    import onnxruntime as ort

    from avssm.graph.lowering import lower_selective_scan

    compat.install()
    ln = pytest.importorskip("mamba_ssm.ops.triton.layer_norm")
    from mamba_ssm.models.mixer_seq_simple import MixerModel

    g = torch.Generator().manual_seed(4)
    x, res, w, b = torch.randn(2, 7, 16, generator=g), torch.randn(2, 7, 16, generator=g), torch.randn(16), None
    for fn, ref in ((ln.layer_norm_fn, ln.layer_norm_ref), (ln.rms_norm_fn, ln.rms_norm_ref)):
        y, r = fn(x, w, b, residual=res, prenorm=True, eps=1e-5)
        y_ref, r_ref = ref(x, w, b, residual=res, prenorm=True, eps=1e-5, upcast=True)
        assert (y - y_ref).abs().max() < 1e-5 and (r - r_ref).abs().max() < 1e-6
    torch.manual_seed(0)
    model = MixerModel(d_model=16, n_layer=2, d_intermediate=0, vocab_size=50, rms_norm=True, fused_add_norm=True,
                       residual_in_fp32=True)
    ids = torch.randint(0, 50, (2, 40))
    model(ids).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    buffer = io.BytesIO()
    with torch.no_grad():
        expected = model.eval()(ids).numpy()
        torch.onnx.export(model, (ids,), buffer, dynamo=False, opset_version=17, input_names=["ids"])
    exported = onnx.load_from_string(buffer.getvalue())
    assert sum(n.op_type == "SelectiveScan" for n in exported.graph.node) == 2
    got = ort.InferenceSession(lower_selective_scan(exported).SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"ids": ids.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-4 * np.abs(expected).max()


# ------------------------------------------------------------------------------------------- Mamba2 (SSD)

def ssd_loop(x, dt, A, B, C, D):
    """The SSD written as its recurrence: per head, state (headdim, N) <- exp(dt A) state + dt x B^T; y = state C."""
    batch, length, heads, headdim = x.shape
    per_group = heads // B.shape[2]
    out = torch.zeros_like(x)
    for h in range(heads):
        g = h // per_group
        state = torch.zeros(batch, headdim, B.shape[3])
        for t in range(length):
            state = torch.exp(dt[:, t, h] * A[h])[:, None, None] * state \
                + dt[:, t, h, None, None] * x[:, t, h, :, None] * B[:, t, g, None, :]
            out[:, t, h] = (state * C[:, t, g, None, :]).sum(-1) + D[h] * x[:, t, h]
    return out


def test_the_ssd_runs_on_the_selective_scan_with_heads_and_groups():
    from avssm.compat.ssd import ssd_scan

    g = torch.Generator().manual_seed(5)
    x, dt = torch.randn(2, 12, 4, 3, generator=g), torch.rand(2, 12, 4, generator=g)
    A, D = -torch.rand(4, generator=g) - 0.2, torch.randn(4, generator=g)
    B, C = torch.randn(2, 12, 2, 5, generator=g), torch.randn(2, 12, 2, 5, generator=g)  # 2 groups of 2 heads
    bias = torch.randn(4, generator=g) * 0.1
    want = ssd_loop(x, torch.nn.functional.softplus(dt + bias).clamp(max=0.5), A, B, C, D)
    got, final = ssd_scan(x, dt, A, B, C, D=D, dt_bias=bias, dt_softplus=True, dt_limit=(0.0, 0.5),
                          return_final_states=True)
    assert (got - want).abs().max() < 1e-5 * want.abs().max() and final.shape == (2, 4, 3, 5)


def test_mamba_ssms_mamba2_runs_trains_and_exports_on_the_cpu():
    """mamba_ssm's own SSD against its ssd_minimal_discrete, and its Mamba2 block on both paths (memory-efficient
    split-conv-scan and the plain one): gradients on the CPU, one SelectiveScan node when exported, ONNX Runtime
    within 1e-4 of PyTorch. Skipped without mamba_ssm."""
    import io

    import numpy as np
    import onnx
    import onnxruntime as ort

    from avssm.graph.lowering import lower_selective_scan

    compat.install()
    pytest.importorskip("mamba_ssm.ops.triton.ssd_combined")
    from mamba_ssm.modules.mamba2 import Mamba2
    from mamba_ssm.modules.ssd_minimal import ssd_minimal_discrete
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

    torch.manual_seed(0)
    x, dt = torch.randn(2, 64, 4, 8), torch.nn.functional.softplus(torch.randn(2, 64, 4) - 2)
    A, B, C = -torch.rand(4) - 0.5, torch.randn(2, 64, 4, 16), torch.randn(2, 64, 4, 16)
    got = mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size=16)
    want, _ = ssd_minimal_discrete(x * dt[..., None], A * dt, B, C, block_len=16)
    assert (got - want).abs().max() < 1e-5 * want.abs().max()
    outputs = []
    for efficient in (True, False):
        torch.manual_seed(0)
        block = Mamba2(d_model=32, d_state=16, d_conv=4, expand=2, headdim=16, use_mem_eff_path=efficient)
        inputs = torch.randn(1, 40, 32, requires_grad=True, generator=torch.Generator().manual_seed(1))
        block(inputs).square().sum().backward()
        assert torch.isfinite(inputs.grad).all() and all(p.grad is not None for p in block.parameters())
        buffer = io.BytesIO()
        with torch.no_grad():
            expected = block.eval()(inputs).numpy()
            torch.onnx.export(block, (inputs.detach(),), buffer, dynamo=False, opset_version=17, input_names=["x"])
        exported = onnx.load_from_string(buffer.getvalue())
        assert sum(n.op_type == "SelectiveScan" for n in exported.graph.node) == 1
        result = ort.InferenceSession(lower_selective_scan(exported).SerializeToString(),
                                      providers=["CPUExecutionProvider"]).run(None, {"x": inputs.detach().numpy()})[0]
        assert np.abs(result - expected).max() < 1e-4 * np.abs(expected).max()
        outputs.append(expected)
    assert np.abs(outputs[0] - outputs[1]).max() < 1e-5 * np.abs(outputs[1]).max()  # both paths, same weights


def test_mamba2s_two_paths_normalize_per_group_as_the_kernel_does():
    """Mamba2 with ngroups > 1 and its gated RMSNorm: the memory-efficient path (split-conv-scan) gives what the
    plain path gives, the norm taken over each group's dim // ngroups channels (mamba_ssm's Triton kernels do;
    its split-conv-scan reference takes all channels). Skipped without mamba_ssm."""
    compat.install()
    pytest.importorskip("mamba_ssm.ops.triton.ssd_combined")
    from mamba_ssm.modules.mamba2 import Mamba2

    torch.manual_seed(0)
    block = Mamba2(d_model=32, d_state=16, headdim=8, ngroups=2, rmsnorm=True).eval()
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        efficient = block(x)
        block.use_mem_eff_path = False
        plain = block(x)
    assert (efficient - plain).abs().max() < 1e-5 * plain.abs().max()


def test_mamba_ssms_blocks_decode_step_by_step_on_the_cpu():
    """The Mamba and Mamba2 blocks' step(): a prefix, then one token at a time through selective_state_update and
    causal_conv1d_update, gives the whole-sequence output; the stand-in matches mamba_ssm's
    selective_state_update_ref with heads and groups. Skipped without mamba_ssm."""
    compat.install()
    pytest.importorskip("mamba_ssm.ops.triton.selective_state_update")
    from mamba_ssm import Mamba, Mamba2
    from mamba_ssm.ops.triton.selective_state_update import selective_state_update, selective_state_update_ref
    from mamba_ssm.utils.generation import InferenceParams

    torch.manual_seed(0)
    for block in (Mamba(d_model=16, d_state=8, layer_idx=0), Mamba2(d_model=32, d_state=16, headdim=8, ngroups=2,
                                                                     layer_idx=0)):
        x = torch.randn(2, 7, block.d_model)
        with torch.no_grad():
            whole = block.eval()(x)
            params = InferenceParams(max_seqlen=8, max_batch_size=2)
            steps = [block(x[:, :3], inference_params=params)]
            for t in range(3, 7):
                params.seqlen_offset = t
                steps.append(block(x[:, t:t + 1], inference_params=params))
        assert (torch.cat(steps, 1) - whole).abs().max() < 1e-5 * whole.abs().max(), type(block).__name__
    g = torch.Generator().manual_seed(1)
    state = torch.randn(2, 4, 3, 5, generator=g)
    args = [torch.randn(2, 4, 3, generator=g), torch.rand(2, 4, 3, generator=g), -torch.rand(4, 3, 5, generator=g),
            torch.randn(2, 2, 5, generator=g), torch.randn(2, 2, 5, generator=g), torch.randn(4, 3, generator=g),
            torch.randn(2, 4, 3, generator=g), torch.randn(4, 3, generator=g)]
    want_state = state.clone()
    got = selective_state_update(state, *args, dt_softplus=True)
    want = selective_state_update_ref(want_state, *args, dt_softplus=True)
    assert (got - want).abs().max() < 1e-5 and (state - want_state).abs().max() < 1e-5


def test_step_decoding_under_export_is_one_line():
    from avssm.compat.selective_scan_cuda import NotCoveredError
    from avssm.compat.state_update import state_update

    class Step(torch.nn.Module):
        def forward(self, x):
            return state_update(torch.zeros(1, 4, 2), x, x, -torch.ones(4, 2), torch.ones(1, 2), torch.ones(1, 2))

    with pytest.raises(NotCoveredError, match="selective_state_update .* cannot be exported"):
        torch.onnx.export(Step(), (torch.ones(1, 4),), __import__("io").BytesIO(), dynamo=False)


# ------------------------------------------------------------------------------------------- official VMamba code

VMAMBA_STYLE_CSMS6S = '''
"""In the style of the official VMamba code's csms6s: the compiled modules tried in turn, guarded."""
import torch
try:
    import selective_scan_cuda_oflex
    WITH_OFLEX = True
except ImportError:
    WITH_OFLEX = False


class SelectiveScanCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, delta_softplus):
        out, x, *rest = selective_scan_cuda_oflex.fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, 1, True)
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, x)
        ctx.delta_softplus = delta_softplus
        return out

    @staticmethod
    def backward(ctx, dout):
        u, delta, A, B, C, D, delta_bias, x = ctx.saved_tensors
        grads = selective_scan_cuda_oflex.bwd(u, delta, A, B, C, D, delta_bias, dout, x, ctx.delta_softplus, 1)
        return (*grads, None)
'''

VMAMBA_STYLE_CSM_TRITON = '''
"""In the style of the official VMamba code's csm_triton: a PyTorch class for CPU tensors, but a CUDA device
context entered for every tensor."""
import torch


class CrossScanF(torch.autograd.Function):
    """Channel-first, four directions, written into slices of an empty tensor (as the official class does)."""

    @staticmethod
    def forward(ctx, x, in_channel_first=True, out_channel_first=True, one_by_one=False, scans=0):
        B, C, H, W = x.shape
        y = x.new_empty((B, 4, C, H * W))
        y[:, 0] = x.flatten(2)
        y[:, 1] = x.transpose(2, 3).flatten(2)
        y[:, 2:4] = torch.flip(y[:, 0:2], dims=[-1])
        return y

    @staticmethod
    def backward(ctx, dy):
        raise NotImplementedError


class CrossMergeF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, in_channel_first=True, out_channel_first=True, one_by_one=False, scans=0):
        B, K, D, H, W = y.shape
        y = y.view(B, K, D, -1)
        y = y[:, 0:2] + y[:, 2:4].flip(dims=[-1])
        return y[:, 0] + y[:, 1].view(B, D, W, H).transpose(2, 3).reshape(B, D, -1)

    @staticmethod
    def backward(ctx, dy):
        raise NotImplementedError


def cross_scan_fn(x, in_channel_first=True, out_channel_first=True, one_by_one=False, scans=0, force_torch=False):
    with torch.cuda.device(x.device):
        return CrossScanF.apply(x, in_channel_first, out_channel_first, one_by_one, scans)


def cross_merge_fn(y, in_channel_first=True, out_channel_first=True, one_by_one=False, scans=0, force_torch=False):
    with torch.cuda.device(y.device):
        return CrossMergeF.apply(y, in_channel_first, out_channel_first, one_by_one, scans)
'''


def vmamba_style_package(tmp_path, monkeypatch, package, extra):
    """A package ``package`` of the VMamba-style csms6s and csm_triton (and ``extra`` files), importable, with
    the compatibility layer installed."""
    folder = tmp_path / package
    folder.mkdir()
    files = {"__init__.py": "", "csms6s.py": VMAMBA_STYLE_CSMS6S, "csm_triton.py": VMAMBA_STYLE_CSM_TRITON, **extra}
    for name, text in files.items():
        (folder / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [k for k in sys.modules if k.startswith((package, "selective_scan_cuda"))]:
        monkeypatch.delitem(sys.modules, name)
    compat.install()


def test_the_official_vmamba_codes_kernels_and_cross_scan_run_on_the_cpu(tmp_path, monkeypatch):
    vmamba_style_package(tmp_path, monkeypatch, "models", {})
    from models import csm_triton, csms6s  # patched by file name, whatever the package

    assert csms6s.WITH_OFLEX
    x = torch.randn(1, 4, 3, 5)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError):  # what the unpatched function does on a machine without CUDA
            csm_triton.cross_scan_fn.__wrapped__(x)
    assert csm_triton.cross_scan_fn(x).shape == (1, 4, 4, 15)
    u, delta, A, B, C, D, _, bias = inputs(batch=1, dim=8, n=1, length=15, groups=4)
    leaves = [t.clone().requires_grad_() for t in (u, delta, A, B, C, D, bias)]
    out = csms6s.SelectiveScanCuda.apply(*leaves, True)
    out.square().sum().backward()
    fresh = [t.clone().requires_grad_() for t in (u, delta, A, B, C, D, bias)]
    ref = selective_scan_ref(*fresh[:6], None, fresh[6], True)
    ref.square().sum().backward()
    assert out.dtype == torch.float32 and (out - ref).abs().max() < 1e-5 * ref.abs().max()
    for a, b in zip(leaves, fresh):
        assert (a.grad - b.grad).abs().max() < 1e-4 * (1 + b.grad.abs().max())


def cross_scan_definition(x, in_channel_first, out_channel_first, scans):
    """VMamba's cross-scan by its definition: row-major, column-major, and (scans 0, 2) their reversals."""
    xc = x if in_channel_first else x.permute(0, 3, 1, 2)
    rows, cols = xc.flatten(2), xc.transpose(2, 3).flatten(2)
    second = cols if scans == 0 else rows
    y = torch.stack([rows, second, rows, second] if scans == 1 else [rows, second, rows.flip(-1), second.flip(-1)], 1)
    return y if out_channel_first else y.permute(0, 3, 1, 2)


@pytest.mark.parametrize("in_first, out_first, scans", [(a, b, s) for a in (True, False) for b in (True, False)
                                                        for s in (0, 1, 2)])
def test_the_cross_scan_written_for_export_is_the_definition(in_first, out_first, scans):
    from avssm.compat.vmamba import cross_scan_for_export

    x = torch.randn(2, 3, 4, 5)
    x = x if in_first else x.permute(0, 2, 3, 1).contiguous()
    assert torch.equal(cross_scan_for_export(x, in_first, out_first, scans),
                       cross_scan_definition(x, in_first, out_first, scans))


def test_a_vmamba_style_cross_scan_exports_to_what_pytorch_computes(tmp_path, monkeypatch):
    # Traced as written (slices of an empty tensor), the cross-scan exports to a graph that computes something else.
    import numpy as np
    import onnxruntime as ort

    folder = tmp_path / "vm"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "csm_triton.py").write_text(VMAMBA_STYLE_CSM_TRITON)
    monkeypatch.syspath_prepend(str(tmp_path))
    compat.install()
    from vm import csm_triton

    class ScanMerge(torch.nn.Module):
        def forward(self, x):
            B, C, H, W = x.shape
            y = csm_triton.cross_scan_fn(x)
            y = y * torch.arange(1, 5, dtype=x.dtype).view(1, 4, 1, 1)  # the directions weighted differently
            return csm_triton.cross_merge_fn(y.view(B, 4, C, H, W))

    x = torch.randn(1, 3, 4, 5)
    path = tmp_path / "cs.onnx"
    with torch.no_grad():
        expected = ScanMerge()(x).numpy()
        torch.onnx.export(ScanMerge(), (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-5 * np.abs(expected).max()


VMAMBA_STYLE_SS2D = '''
"""In the style of the official VMamba code's vmamba.py: SS2Dv2.forward_corev2 with the cross-scan, per-direction
einsum projections, one grouped scan and the cross-merge."""
import torch
from .csm_triton import cross_scan_fn, cross_merge_fn
from .csms6s import SelectiveScanCuda


class SS2Dv2:
    def forward_corev2(self, x, shift=False):
        B, D, H, W = x.shape
        K, N, R, L = 4, self.d_state, self.dt_rank, H * W
        xs = cross_scan_fn(x, in_channel_first=True, out_channel_first=True, scans=0)
        x_dbl = torch.einsum("b k d l, k c d -> b k c l", xs, self.x_proj_weight)
        dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
        dts = torch.einsum("b k r l, k d r -> b k d l", dts, self.dt_projs_weight)
        if shift:  # not pointwise: each step's delta from the step before
            dts = dts.roll(1, dims=-1)
        ys = SelectiveScanCuda.apply(xs.view(B, -1, L), dts.contiguous().view(B, -1, L),
                                     -self.A_logs.float().exp(), Bs.contiguous(), Cs.contiguous(), self.Ds.float(),
                                     self.dt_projs_bias.view(-1).float(), True).view(B, K, -1, H, W)
        return cross_merge_fn(ys, in_channel_first=True, out_channel_first=True, scans=0).view(B, D, H, W)


class SS2D(torch.nn.Module, SS2Dv2):
    def __init__(self, d=8, n=4, r=2, shift=False):
        super().__init__()
        torch.manual_seed(0)
        self.d_state, self.dt_rank, self.shift = n, r, shift
        self.x_proj_weight = torch.nn.Parameter(torch.randn(4, r + 2 * n, d) * 0.3)
        self.dt_projs_weight = torch.nn.Parameter(torch.randn(4, d, r) * 0.5)
        self.dt_projs_bias = torch.nn.Parameter(torch.rand(4, d) * 0.1)
        self.A_logs = torch.nn.Parameter(torch.rand(4 * d, n))
        self.Ds = torch.nn.Parameter(torch.ones(4 * d))

    def forward(self, x):
        return self.forward_corev2(x, shift=self.shift)
'''


@pytest.mark.parametrize("shift, unfused, layout", [(False, False, "cross-2d"), (True, False, "sequence"),
                                                    (False, True, "sequence")])
def test_the_official_vmamba_codes_ss2d_exports_as_one_fused_node(tmp_path, monkeypatch, shift, unfused, layout):
    """forward_corev2 exported: one cross-2d node, the projections on the map. Where the code between the
    cross-scan and the cross-merge is not pointwise, or within --unfused, the version 1 node as written."""
    import contextlib

    from avssm.graph.scan_node import layout_counts
    from avssm.ops import selective_scan_onnx

    vmamba_style_package(tmp_path, monkeypatch, "vmcode", {"vmamba.py": VMAMBA_STYLE_SS2D})
    from vmcode import vmamba

    block = vmamba.SS2D(shift=shift).eval()
    with selective_scan_onnx.unfused_export() if unfused else contextlib.nullcontext():
        model, error = export_portable(block, torch.randn(1, 8, 5, 6))
    assert layout_counts(model) == {layout: 1} and error < 1e-4


# ------------------------------------------------------------------------------------------- official Vim code

VIM_STYLE_INTERFACE = '''
"""In the style of Vim's bundled mamba_ssm.ops.selective_scan_interface (mamba 1.1.1): the inner function without
out_proj that bimamba v2 calls once per direction, over the compiled modules."""
import torch
import causal_conv1d_cuda
import selective_scan_cuda


class MambaInnerFnNoOutProj(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, A, B=None, C=None, D=None,
                delta_bias=None, B_proj_bias=None, C_proj_bias=None, delta_softplus=True, checkpoint_lvl=1):
        L, rank, n = xz.shape[-1], delta_proj_weight.shape[1], A.shape[-1]
        x, z = xz.chunk(2, dim=1)
        conv_out = causal_conv1d_cuda.causal_conv1d_fwd(x, conv1d_weight.squeeze(1), conv1d_bias, True)
        x_dbl = torch.nn.functional.linear(conv_out.transpose(1, 2).reshape(-1, conv_out.shape[1]), x_proj_weight)
        delta = (delta_proj_weight @ x_dbl[:, :rank].t()).view(-1, xz.shape[0], L).transpose(0, 1).contiguous()
        B = x_dbl[:, rank:rank + n].view(xz.shape[0], L, n).transpose(1, 2)[:, None].contiguous()
        C = x_dbl[:, rank + n:].view(xz.shape[0], L, n).transpose(1, 2)[:, None].contiguous()
        out, scan_state, out_z = selective_scan_cuda.fwd(conv_out, delta, A, B, C, D, z.contiguous(), delta_bias,
                                                         delta_softplus)
        return out_z


def mamba_inner_fn_no_out_proj(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, A, B=None, C=None,
                               D=None, delta_bias=None, B_proj_bias=None, C_proj_bias=None, delta_softplus=True):
    return MambaInnerFnNoOutProj.apply(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, A, B, C, D,
                                       delta_bias, B_proj_bias, C_proj_bias, delta_softplus)
'''

VIM_STYLE_MAMBA_SIMPLE = '''
"""In the style of Vim's bundled mamba_ssm.modules.mamba_simple: the Mamba block with bimamba_type "v2", each
direction with its own conv1d / x_proj / dt_proj / A / D, the backward one on the flipped sequence."""
import math
import torch
import torch.nn.functional as F
from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn_no_out_proj


class Mamba(torch.nn.Module):
    def __init__(self, d_model, d_state=8, d_conv=4, expand=2, use_fast_path=True, bimamba_type="v2",
                 if_divide_out=True, init_layer_scale=None):
        super().__init__()
        torch.manual_seed(0)
        self.d_state, self.d_inner = d_state, expand * d_model
        self.dt_rank, self.use_fast_path = math.ceil(d_model / 16), use_fast_path
        self.bimamba_type, self.if_divide_out, self.init_layer_scale = bimamba_type, if_divide_out, init_layer_scale
        if init_layer_scale is not None:
            self.gamma = torch.nn.Parameter(init_layer_scale * torch.ones(d_model))
        di, r = self.d_inner, self.dt_rank
        self.in_proj = torch.nn.Linear(d_model, 2 * di, bias=False)
        self.out_proj = torch.nn.Linear(di, d_model, bias=False)
        for s in ("", "_b"):
            setattr(self, "conv1d" + s, torch.nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1))
            setattr(self, "x_proj" + s, torch.nn.Linear(di, r + 2 * d_state, bias=False))
            setattr(self, "dt_proj" + s, torch.nn.Linear(r, di))
            setattr(self, "A" + s + "_log", torch.nn.Parameter(torch.log(torch.arange(1., d_state + 1).repeat(di, 1))))
            setattr(self, "D" + s, torch.nn.Parameter(torch.ones(di)))

    def forward(self, hidden_states, inference_params=None):
        xz = self.in_proj.weight @ hidden_states.reshape(-1, hidden_states.shape[-1]).t()  # (2 di, batch * L)
        xz = xz.view(-1, hidden_states.shape[0], hidden_states.shape[1]).transpose(0, 1)
        out = mamba_inner_fn_no_out_proj(xz, self.conv1d.weight, self.conv1d.bias, self.x_proj.weight,
                                         self.dt_proj.weight, -torch.exp(self.A_log.float()), None, None,
                                         self.D.float(), delta_bias=self.dt_proj.bias.float(), delta_softplus=True)
        out_b = mamba_inner_fn_no_out_proj(xz.flip([-1]), self.conv1d_b.weight, self.conv1d_b.bias,
                                           self.x_proj_b.weight, self.dt_proj_b.weight,
                                           -torch.exp(self.A_b_log.float()), None, None, self.D_b.float(),
                                           delta_bias=self.dt_proj_b.bias.float(), delta_softplus=True)
        y = (out + out_b.flip([-1])).transpose(1, 2)
        out = F.linear(y / 2 if self.if_divide_out else y, self.out_proj.weight, self.out_proj.bias)
        return out * self.gamma if self.init_layer_scale is not None else out
'''


@pytest.mark.parametrize("options, layout", [({}, {"bidirectional": 1}),
                                             ({"if_divide_out": False, "init_layer_scale": 0.5}, {"bidirectional": 1}),
                                             ({"bimamba_type": "none"}, {"sequence": 2})])
def test_vims_bimamba_v2_block_exports_as_one_bidirectional_node(tmp_path, monkeypatch, options, layout):
    """Vim's v2 block exported: one bidirectional node instead of two version 1 nodes and the flips, with the
    same outputs. Another bimamba_type is exported as written (here: its two calls, with the flips)."""

    from avssm.graph.scan_node import layout_counts

    package = tmp_path / "mamba_ssm"
    for sub in ("", "ops", "modules"):
        (package / sub).mkdir(parents=True, exist_ok=True)
        (package / sub / "__init__.py").write_text("")
    (package / "ops" / "selective_scan_interface.py").write_text(VIM_STYLE_INTERFACE)
    (package / "modules" / "mamba_simple.py").write_text(VIM_STYLE_MAMBA_SIMPLE)
    saved = {k: v for k, v in sys.modules.items() if k.startswith(("mamba_ssm", "selective_scan_cuda",
                                                                     "causal_conv1d"))}
    for name in saved:
        del sys.modules[name]
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        compat.install()
        from mamba_ssm.modules.mamba_simple import Mamba

        model, error = export_portable(Mamba(16, **options).eval(), torch.randn(2, 20, 16))
    finally:
        for name in [k for k in sys.modules if k.startswith(("mamba_ssm", "selective_scan_cuda", "causal_conv1d"))]:
            del sys.modules[name]
        sys.modules.update(saved)
    assert layout_counts(model) == layout and error < 1e-4
