"""The fast scan paths against the sequential reference (the specification)."""
import pytest
import torch
import torch.nn.functional as F

from avssm.ops import selective_scan, selective_scan_chunked, selective_scan_parallel, selective_scan_ref
from avssm.ops import cpu_kernel
from conftest import make_inputs, rel_err


CASES = [
    # (L, N, groups, use z, use D, use delta_bias, large delta)
    (1, 16, 1, True, True, True, False),
    (7, 1, 2, False, True, True, False),
    (64, 16, 4, True, False, False, False),
    (65, 1, 1, True, True, False, True),
    (257, 16, 2, False, False, True, True),
    (2049, 16, 1, True, True, True, False),
    (4099, 1, 4, True, True, True, True),
    (20000, 16, 2, True, True, True, False),
    (20000, 1, 1, False, True, True, True),
]


@pytest.mark.parametrize("length,n,groups,use_z,use_D,use_bias,large", CASES)
@pytest.mark.parametrize("impl", ["chunked", "parallel", "cpu_kernel"])
def test_fast_paths_match_reference(length, n, groups, use_z, use_D, use_bias, large, impl):
    if impl == "cpu_kernel" and not cpu_kernel.available():
        pytest.skip("compiled CPU kernel unavailable (no C compiler or AVSSM_CPU_KERNEL=0)")
    u, delta, A, B, C, D, z, bias = make_inputs(2, 4, length, n, groups, large)
    kw = dict(D=D if use_D else None, z=z if use_z else None, delta_bias=bias if use_bias else None,
              delta_softplus=True, return_last_state=True)
    ref, ref_state = selective_scan_ref(u, delta, A, B, C, **kw)
    fast = {"chunked": selective_scan_chunked, "parallel": selective_scan_parallel,
            "cpu_kernel": cpu_kernel.selective_scan_cpu}[impl]
    out, state = fast(u, delta, A, B, C, **kw)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert rel_err(out, ref) < 1e-5
    assert rel_err(state, ref_state) < 1e-5
    assert torch.isfinite(out).all()


def test_no_softplus_and_chunk_sizes():
    u, delta, A, B, C, D, z, bias = make_inputs(1, 3, 100, 16, 1)
    delta = F.softplus(delta)  # positive deltas given directly
    ref = selective_scan_ref(u, delta, A, B, C, D=D)
    for chunk in (1, 3, 16, 100, 128):
        assert rel_err(selective_scan_chunked(u, delta, A, B, C, D=D, chunk_size=chunk), ref) < 1e-5


def test_half_inputs_keep_dtype_and_fp32_state():
    u, delta, A, B, C, D, z, bias = make_inputs(1, 4, 50, 16, 1, dtype=torch.bfloat16)
    out, state = selective_scan(u, delta, A, B, C, D=D, z=z, delta_bias=bias, delta_softplus=True,
                                return_last_state=True)
    ref = selective_scan_ref(u, delta, A, B, C, D=D, z=z, delta_bias=bias, delta_softplus=True)
    assert out.dtype == torch.bfloat16 and state.dtype == torch.float32
    assert rel_err(out.float(), ref.float()) < 1e-2


def test_extreme_decay_stays_finite():
    # delta*A far beyond exp's range in one step and across chunks: no overflow, no NaN.
    u, delta, A, B, C, D, z, bias = make_inputs(1, 2, 3000, 16, 1)
    delta = delta.abs() * 200
    out = selective_scan_chunked(u, delta, A * 50, B, C, D=D, delta_softplus=True)
    ref = selective_scan_ref(u, delta, A * 50, B, C, D=D, delta_softplus=True)
    assert torch.isfinite(out).all()
    assert rel_err(out, ref) < 1e-5


TRAINING_PATHS = {"parallel": (selective_scan_parallel, 1e-5),  # float64 math: tight
                  "cpu_kernel": (cpu_kernel.selective_scan_cpu_train, 1e-4)}  # fp32 math in C


@pytest.mark.parametrize("length,n,groups", [(1, 4, 1), (17, 1, 2), (300, 16, 2), (5000, 1, 4)])
@pytest.mark.parametrize("impl", list(TRAINING_PATHS))
def test_training_path_gradients_match_reference(length, n, groups, impl):
    # float64 inputs, every input differentiated, a random output weighting.
    if impl == "cpu_kernel" and not cpu_kernel.available():
        pytest.skip("no C compiler for the CPU kernel")
    fn, tol = TRAINING_PATHS[impl]
    torch.manual_seed(length)
    u, delta, A, B, C, D, z, bias = (t.double() for t in make_inputs(2, 8, length, n, groups))
    inputs = [u, delta, A, B, C, D, z, bias]
    kw = dict(delta_softplus=True)

    def grads(fn):
        ts = [t.clone().requires_grad_() for t in inputs]
        out = fn(*ts[:5], D=ts[5], z=ts[6], delta_bias=ts[7], **kw)
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
        gs = torch.autograd.grad((out * weight).sum(), ts, allow_unused=True)
        return out, [torch.zeros_like(t) if g is None else g for g, t in zip(gs, ts)]  # L=1 never uses A

    out, g_fast = grads(fn)
    ref, g_ref = grads(selective_scan_ref)
    assert rel_err(out, ref) < tol
    for name, a, b in zip("u delta A B C D z delta_bias".split(), g_fast, g_ref):
        assert rel_err(a, b) < tol, name


def test_parallel_path_is_fp32_under_autocast_and_finite_for_extreme_decay():
    u, delta, A, B, C, D, z, bias = make_inputs(1, 2, 3000, 16, 1)
    delta = delta.abs() * 200
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = selective_scan_parallel(u, delta, A * 50, B, C, D=D, delta_softplus=True)
    ref = selective_scan_ref(u, delta, A * 50, B, C, D=D, delta_softplus=True)
    assert torch.isfinite(out).all() and rel_err(out, ref) < 1e-5


def test_gradients_flow_through_chunked_path():
    u, delta, A, B, C, D, z, bias = make_inputs(1, 3, 40, 4, 1)
    inputs = [t.clone().requires_grad_() for t in (u, delta, B, C)]
    selective_scan_chunked(*inputs[:2], A, *inputs[2:], D=D, z=z, delta_softplus=True).sum().backward()
    ref_inputs = [t.clone().requires_grad_() for t in (u, delta, B, C)]
    selective_scan_ref(*ref_inputs[:2], A, *ref_inputs[2:], D=D, z=z, delta_softplus=True).sum().backward()
    for a, b in zip(inputs, ref_inputs):
        assert rel_err(a.grad, b.grad) < 1e-4


def test_dispatch_uses_autograd_path_when_training():
    u, delta, A, B, C, D, z, bias = make_inputs(1, 2, 30, 4, 1)
    u.requires_grad_()
    out = selective_scan(u, delta, A, B, C, D=D)
    assert out.grad_fn is not None
    if cpu_kernel.available():  # on the CPU, training runs the C forward and backward
        assert "_BareScanBackward" in _graph_node_names(out.grad_fn)


def _graph_node_names(fn) -> set:
    names, todo = set(), [fn]
    while todo:
        node = todo.pop()
        if node is not None and type(node).__name__ not in names:
            names.add(type(node).__name__)
            todo.extend(next_fn for next_fn, _ in node.next_functions)
    return names


@pytest.mark.parametrize("bad", ["delta", "A", "B", "groups", "D"])
def test_shape_errors_name_the_tensor(bad):
    u, delta, A, B, C, D, z, bias = make_inputs(1, 4, 10, 2, 1)
    args = dict(u=u, delta=delta, A=A, B=B, C=C, D=D)
    if bad == "delta":
        args["delta"] = delta[..., :5]
    elif bad == "A":
        args["A"] = A[:3]
    elif bad == "B":
        args["B"] = B[..., :5]
    elif bad == "groups":
        args["B"] = args["C"] = torch.randn(1, 3, 2, 10)
    else:
        args["D"] = D[:2]
    name = "B" if bad == "groups" else bad
    with pytest.raises(ValueError, match=name):
        selective_scan(**args)


def test_one_chunk_size_rule_for_the_pytorch_path_and_the_lowering():
    import importlib

    from avssm.graph import lowering, scan_node

    ops = importlib.import_module("avssm.ops.selective_scan")  # the module (the package exports the function)

    assert ops.scan_chunk_size is scan_node.chunk_size and lowering.chunk_size is scan_node.chunk_size
    assert [scan_node.chunk_size(L) for L in (1, 300, 2900, 4096, 8161, 130560, 10**7)] == [16, 16, 32, 64, 64, 256, 256]
