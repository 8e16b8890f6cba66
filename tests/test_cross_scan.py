"""The fused scans: VMamba's four directions as one operation on the map (avssm.ops.cross_scan) and Vim's two
directions in one call without flipped copies (avssm.ops.bidirectional_scan). Every path against its definition
(the copies or flips + the reference scan + the sum or average back), gradients, and the models unchanged."""
import pytest
import torch

from avssm.ops import cpu_kernel
from avssm.ops.cross_scan import cross_selective_scan, cross_selective_scan_ref
from conftest import rel_err


def inputs(b, d, h, w, n, requires_grad=False):
    g = torch.Generator().manual_seed(b * 1000 + d * 100 + h * 10 + w + n)
    t = [torch.randn(b, d, h, w, generator=g), torch.randn(b, 4, d, h, w, generator=g) * 0.5,
         -torch.exp(torch.randn(4 * d, n, generator=g)), torch.randn(b, 4, n, h, w, generator=g),
         torch.randn(b, 4, n, h, w, generator=g), torch.randn(4 * d, generator=g), torch.randn(4 * d, generator=g) * 0.5]
    return [x.requires_grad_(requires_grad) for x in t]


SHAPES = [(1, 8, 5, 7, 1), (2, 6, 9, 4, 16), (1, 4, 1, 70, 1), (1, 3, 13, 11, 4), (1, 5, 67, 3, 1), (1, 2, 9, 130, 16)]


@pytest.mark.skipif(not cpu_kernel.available(), reason="needs a C compiler for the CPU kernel")
@pytest.mark.parametrize("b,d,h,w,n", SHAPES)
@pytest.mark.parametrize("softplus", [True, False])
def test_cpu_kernel_matches_the_definition(b, d, h, w, n, softplus):
    """The fused CPU kernel (no traversal copies) against the definition: odd maps, one row or column, more than
    one 64-token tile per direction, N = 1, 4 and 16, with and without softplus; D and bias on and off."""
    u, delta, A, B, C, D, bias = inputs(b, d, h, w, n)
    if not softplus:
        delta, bias = delta.abs(), bias.abs()  # a step is positive (softplus makes it so otherwise)
    for D_, bias_ in ((D, bias), (None, None)):
        ref = cross_selective_scan_ref(u, delta, A, B, C, D_, bias_, softplus)
        got = cpu_kernel.cross_selective_scan_cpu(u, delta, A, B, C, D_, bias_, softplus)
        assert got.shape == (b, d, h, w) and rel_err(got, ref) < 1e-5


@pytest.mark.parametrize("b,d,h,w,n", SHAPES[:4])
def test_autograd_path_gradients_match_the_definition(b, d, h, w, n):
    """Training goes through the copies and avssm's selective_scan (autograd): its gradients are the
    reference's for every input."""
    fast = inputs(b, d, h, w, n, requires_grad=True)
    ref = [t.detach().clone().requires_grad_(True) for t in fast]
    weight = torch.randn(b, d, h, w)
    (cross_selective_scan(*fast, delta_softplus=True) * weight).sum().backward()
    (cross_selective_scan_ref(*ref, delta_softplus=True) * weight).sum().backward()
    for name, a, r in zip(("u", "delta", "A", "B", "C", "D", "delta_bias"), fast, ref):
        assert rel_err(a.grad, r.grad) < 1e-4, name


def test_shapes_are_checked_by_name():
    u, delta, A, B, C, D, bias = inputs(1, 4, 3, 5, 1)
    with pytest.raises(ValueError, match=r"B must be \(1, 4, 1, 3, 5\)"):
        cross_selective_scan(u, delta, A, B[:, :, :, :2], C)
    with pytest.raises(ValueError, match=r"u must be \(batch, dim, H, W\)"):
        cross_selective_scan(u.flatten(2), delta, A, B, C)


def fused_and_unfused(name, size, block, method, unfused):
    """The model's outputs with its fused blocks, then with each block's ``method`` replaced by ``unfused`` (the
    copies form the exported graph keeps)."""
    from avssm.models import create_model

    model = create_model(name).eval()
    blocks = [m for m in model.modules() if type(m).__name__ == block]
    x = torch.randn(1, 3, *size)
    with torch.inference_mode():
        fused = model(x)
        for m in blocks:
            setattr(m, method, getattr(m, unfused))
        copies = model(x)
    as_tuple = lambda out: out if isinstance(out, tuple) else (out,)  # noqa: E731
    return list(zip(as_tuple(fused), as_tuple(copies)))


@pytest.mark.parametrize("name,size", [("vmamba_nano_det", (96, 160)), ("vmamba_v0_tiny", (64, 64))])
def test_models_give_what_the_copies_gave(name, size):
    """VMamba's SS2D runs the map form in PyTorch and exports the copies form: the two give the same outputs
    (equal here: the same arithmetic in the same order), N = 1 (v2 models) and N = 16 (v0)."""
    for fused, copies in fused_and_unfused(name, size, "SS2D", "scan", "_scan_copies"):
        assert rel_err(fused, copies) <= 1e-6


# ------------------------------------------------------------------------------------------ Vim: both directions

def bidirectional_inputs(b, d, L, n, requires_grad=False):
    g = torch.Generator().manual_seed(b * 1000 + d * 100 + L + n)
    t = [torch.randn(b, 2 * d, L, generator=g), torch.randn(b, 2 * d, L, generator=g) * 0.5,
         -torch.exp(torch.randn(2 * d, n, generator=g)), torch.randn(b, 2, n, L, generator=g),
         torch.randn(b, 2, n, L, generator=g), torch.randn(2 * d, generator=g), torch.randn(b, d, L, generator=g),
         torch.randn(2 * d, generator=g) * 0.5]
    return [x.requires_grad_(requires_grad) for x in t]


VIM_SHAPES = [(1, 4, 9, 16), (2, 3, 130, 16), (1, 2, 1, 1), (1, 5, 200, 4), (1, 3, 8161, 16)]


@pytest.mark.skipif(not cpu_kernel.available(), reason="needs a C compiler for the CPU kernel")
@pytest.mark.parametrize("b,d,L,n", VIM_SHAPES)
def test_bidirectional_cpu_kernel_matches_the_definition(b, d, L, n):
    """The CPU kernel (the backward direction walked by index) against the definition: one token, several tiles,
    Vim's 1080p length (8161), N 1/4/16, with and without z, D and bias."""
    from avssm.ops.bidirectional_scan import bidirectional_selective_scan_ref

    u, delta, A, B, C, D, z, bias = bidirectional_inputs(b, d, L, n)
    for D_, z_, bias_ in ((D, z, bias), (None, None, None)):
        ref = bidirectional_selective_scan_ref(u, delta, A, B, C, D_, z_, bias_, True)
        got = cpu_kernel.bidirectional_selective_scan_cpu(u, delta, A, B, C, D_, z_, bias_, True)
        assert got.shape == (b, d, L) and rel_err(got, ref) < 1e-5


@pytest.mark.parametrize("b,d,L,n", VIM_SHAPES[:4])
def test_bidirectional_autograd_gradients_match_the_definition(b, d, L, n):
    from avssm.ops.bidirectional_scan import bidirectional_selective_scan, bidirectional_selective_scan_ref

    fast = bidirectional_inputs(b, d, L, n, requires_grad=True)
    ref = [t.detach().clone().requires_grad_(True) for t in fast]
    weight = torch.randn(b, d, L)
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    (bidirectional_selective_scan(*fast[:5], D=fast[5], z=fast[6], delta_bias=fast[7], delta_softplus=True)
     * weight).sum().backward()
    (bidirectional_selective_scan_ref(*ref[:5], D=ref[5], z=ref[6], delta_bias=ref[7], delta_softplus=True)
     * weight).sum().backward()
    for name, a, r in zip(names, fast, ref):
        assert rel_err(a.grad, r.grad) < 1e-4, name


@pytest.mark.parametrize("name,size", [("vim_tiny", (224, 224)), ("vim_tiny_det", (96, 160))])
def test_vim_gives_what_the_flips_gave(name, size):
    """Vim's mixer runs both directions in one call in PyTorch (the backward convolution as an anti-causal one on
    the sequence as it is) and exports the flips form: the outputs agree to 1e-5 (the convolution's taps are
    summed in the other order)."""
    for fused, flips in fused_and_unfused(name, size, "BiMambaMixer", "forward", "_forward_flips"):
        assert rel_err(fused, flips) <= 1e-5
