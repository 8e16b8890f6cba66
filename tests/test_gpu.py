"""GPU checks (skipped without CUDA): the scan and the models on CUDA agree with the CPU."""
import os

import pytest
import torch

from avssm.models import create_model
from avssm.ops import selective_scan, selective_scan_ref
from conftest import FIXTURES, rel_err

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to PyTorch)")]


@pytest.fixture(autouse=True)
def no_tf32():
    """TF32 convolutions/matmuls alone move outputs by ~1e-4; every comparison here is at fp32 precision, whatever
    the order the tests run in (a `-k` selection once failed only because earlier tests had turned TF32 off)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("length,n,groups", [(1, 16, 1), (2049, 16, 2), (100003, 1, 4), (4096, 16, 1)])
def test_scan_on_cuda_matches_reference(length, n, groups):
    dim = 8
    g = torch.Generator().manual_seed(0)
    u, delta, z = (torch.randn(1, dim, length, generator=g) for _ in range(3))
    A = -torch.exp(torch.randn(dim, n, generator=g))
    B, C = (torch.randn(1, groups, n, length, generator=g) for _ in range(2))
    D, bias = torch.randn(dim, generator=g), torch.randn(dim, generator=g)
    ref = selective_scan_ref(u, delta, A, B, C, D=D, z=z, delta_bias=bias, delta_softplus=True)
    out = selective_scan(*(t.cuda() for t in (u, delta, A, B, C)), D=D.cuda(), z=z.cuda(), delta_bias=bias.cuda(),
                         delta_softplus=True)
    assert out.is_cuda and rel_err(out.cpu(), ref) < 1e-5


def test_official_fixture_on_cuda():
    outputs = torch.load(os.path.join(FIXTURES, "official_outputs.pt"), weights_only=True)
    for case, c in outputs.items():
        model = create_model(c["model"], checkpoint=os.path.join(FIXTURES, f"official_{case}.pth"), **c["overrides"])
        with torch.no_grad():
            logits = model.cuda().eval()(c["input"].cuda()).cpu()
        assert (logits - c["logits"]).abs().max().item() < 1e-4, case


@pytest.mark.parametrize("name", ["vmamba_tiny_det", "vim_tiny_det"])
def test_tiny_detector_cuda_matches_cpu_at_1080p(name):
    model = create_model(name).eval()
    x = torch.randn(1, 3, 1080, 1920)
    with torch.no_grad():
        boxes_cpu, scores_cpu = model(x)
        boxes_gpu, scores_gpu = model.cuda()(x.cuda())
    assert rel_err(boxes_gpu.cpu(), boxes_cpu) < 1e-4
    assert rel_err(scores_gpu.cpu(), scores_cpu) < 1e-4


# ------------------------------------------------------------------------------ the CUDA kernel (avssm/csrc/cuda)

from avssm import native  # noqa: E402
from avssm.ops import cuda_kernel  # noqa: E402

needs_kernel = pytest.mark.skipif(not cuda_kernel.available(),
                                  reason="needs a CUDA GPU and libavssm_kernels.so (avssm build-plugins)")
KERNEL_CASES = [
    # (L, N, groups, z, D, delta_bias)
    (1, 16, 1, True, True, True), (7, 1, 2, False, True, True), (2048, 16, 4, True, False, False),
    (2049, 1, 1, True, True, True), (2049, 64, 2, False, True, True), (100_003, 1, 4, False, True, True),
    (100_003, 16, 2, True, True, True), (4096, 64, 1, True, False, True),
]


@needs_kernel
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 5e-3), (torch.bfloat16, 5e-3)])
@pytest.mark.parametrize("length,n,groups,use_z,use_D,use_bias", KERNEL_CASES)
def test_cuda_kernel_matches_reference(length, n, groups, use_z, use_D, use_bias, dtype, tol):
    g = torch.Generator().manual_seed(length + n)
    batch, dim = 2, 8
    u, delta, z = (torch.randn(batch, dim, length, generator=g) for _ in range(3))
    A = -torch.exp(torch.randn(dim, n, generator=g))
    B, C = (torch.randn(batch, groups, n, length, generator=g) for _ in range(2))
    D, bias = torch.randn(dim, generator=g), torch.randn(dim, generator=g)
    # The reference sees the same rounded inputs as the kernel.
    u, delta, z, B, C = (t.to(dtype) for t in (u, delta, z, B, C))
    kw = dict(D=D if use_D else None, z=z if use_z else None, delta_bias=bias if use_bias else None, delta_softplus=True)
    ref = selective_scan_ref(u, delta, A, B, C, **kw)
    out = cuda_kernel.selective_scan_cuda(*(t.cuda() for t in (u, delta, A, B, C)),
                                          **{k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()})
    assert out.dtype == dtype and out.is_cuda
    assert rel_err(out.float().cpu(), ref.float()) < tol


@needs_kernel
def test_cuda_kernel_batch1_long_sequence_split_across_blocks():
    # batch 1, a few channels, L = 130k: the split-L path (two passes through the workspace).
    g = torch.Generator().manual_seed(1)
    u, delta = torch.randn(1, 4, 130_560, generator=g), torch.randn(1, 4, 130_560, generator=g)
    A = -torch.exp(torch.randn(4, 1, generator=g))
    B, C = torch.randn(1, 4, 1, 130_560, generator=g), torch.randn(1, 4, 1, 130_560, generator=g)
    ref = selective_scan_ref(u, delta, A, B, C, delta_softplus=True)
    out = cuda_kernel.selective_scan_cuda(u.cuda(), delta.cuda(), A.cuda(), B.cuda(), C.cuda(), delta_softplus=True)
    assert rel_err(out.cpu(), ref) < 1e-5


@needs_kernel
@pytest.mark.parametrize("lanes", [0, 1, 2, 4, 8])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 5e-3)])
def test_cuda_kernel_n16_layouts_partial_warps_and_split(lanes, dtype, tol):
    # N = 16 runs one warp per 32 / lanes channels of a (batch, group): lanes 0 as the plan chooses (1 or 2),
    # 1/2/4/8 forced through lanes_per_channel (4 and 8 only run when asked for). 42 channels per group leave
    # the last warp part-filled in every layout; batch 1 with L = 5000 splits (then once more unsplit).
    g = torch.Generator().manual_seed(2)
    u, delta, z = (torch.randn(1, 84, 5000, generator=g) for _ in range(3))
    A = -torch.exp(torch.randn(84, 16, generator=g))
    B, C = torch.randn(1, 2, 16, 5000, generator=g), torch.randn(1, 2, 16, 5000, generator=g)
    D, bias = torch.randn(84, generator=g), torch.randn(84, generator=g)
    u, delta, z, B, C = (t.to(dtype) for t in (u, delta, z, B, C))
    ref = selective_scan_ref(u, delta, A, B, C, D=D, z=z, delta_bias=bias, delta_softplus=True)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    planned, segments = native.scan_plan(1, 84, 5000, 16, 2, sms, native.workspace_size(1, 84, 5000, 16, sms),
                                         lanes_per_channel=lanes)
    assert (planned == lanes if lanes else planned in (1, 2)) and segments > 1
    for workspace in (None, torch.empty(1, dtype=torch.uint8, device="cuda")):  # split, then one segment
        out = cuda_kernel.selective_scan_cuda(*(t.cuda() for t in (u, delta, A, B, C)), D=D.cuda(), z=z.cuda(),
                                              delta_bias=bias.cuda(), delta_softplus=True, workspace=workspace,
                                              lanes_per_channel=lanes)
        assert rel_err(out.float().cpu(), ref.float()) < tol


@needs_kernel
@pytest.mark.parametrize("length", [1, 7, 4096 + 37, 2 * 4096 + 40, 100_003])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 5e-3), (torch.bfloat16, 5e-3)])
def test_cuda_kernel_n16_token_layout(length, dtype, tol):
    # The token layout (32 tokens per thread, 4096 per chunk) runs only when asked for: lengths inside one
    # thread, unaligned and aligned rows over several chunks, and a long one; with and without z, D and bias.
    g = torch.Generator().manual_seed(4)
    u, delta, z = (torch.randn(2, 6, length, generator=g) for _ in range(3))
    A = -torch.exp(torch.randn(6, 16, generator=g))
    B, C = torch.randn(2, 3, 16, length, generator=g), torch.randn(2, 3, 16, length, generator=g)
    D, bias = torch.randn(6, generator=g), torch.randn(6, generator=g)
    u, delta, z, B, C = (t.to(dtype) for t in (u, delta, z, B, C))
    assert native.scan_plan(2, 6, length, 16, 3, 132, 1 << 20, layout="tokens") == (1, 1)
    for optional in ({"D": D, "z": z, "delta_bias": bias}, {}):
        ref = selective_scan_ref(u, delta, A, B, C, delta_softplus=True, **optional)
        out = cuda_kernel.selective_scan_cuda(*(t.cuda() for t in (u, delta, A, B, C)), delta_softplus=True,
                                              layout="tokens", **{k: v.cuda() for k, v in optional.items()})
        assert rel_err(out.float().cpu(), ref.float()) < tol


@needs_kernel
def test_cuda_kernel_n16_one_lane_per_channel():
    # Enough channels to fill every multiprocessor with 32-channel warps: the plan then gives each lane a
    # whole channel (16 states) instead of sharing it between two lanes.
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    dim, length = 32 * 16 * sms, 64
    g = torch.Generator().manual_seed(3)
    u, delta, z = (torch.randn(1, dim, length, generator=g) for _ in range(3))
    A = -torch.exp(torch.randn(dim, 16, generator=g))
    B, C = torch.randn(1, 1, 16, length, generator=g), torch.randn(1, 1, 16, length, generator=g)
    D, bias = torch.randn(dim, generator=g), torch.randn(dim, generator=g)
    u, delta, z, B, C = (t.half() for t in (u, delta, z, B, C))
    ref = selective_scan_ref(u, delta, A, B, C, D=D, z=z, delta_bias=bias, delta_softplus=True)
    out = cuda_kernel.selective_scan_cuda(*(t.cuda() for t in (u, delta, A, B, C)), D=D.cuda(), z=z.cuda(),
                                          delta_bias=bias.cuda(), delta_softplus=True)
    assert rel_err(out.float().cpu(), ref.float()) < 5e-3


@needs_kernel
@pytest.mark.parametrize("name", ["vmamba_tiny_det", "vim_tiny_det"])
def test_detector_through_kernel_matches_pytorch_path(name, monkeypatch):
    model = create_model(name).eval().cuda()
    x = torch.randn(1, 3, 544, 960, device="cuda")
    with torch.no_grad():
        boxes_k, scores_k = model(x)
        monkeypatch.setenv("AVSSM_CUDA_KERNEL", "0")
        boxes_p, scores_p = model(x)
    assert rel_err(scores_k.cpu(), scores_p.cpu()) < 1e-4 and rel_err(boxes_k.cpu(), boxes_p.cpu()) < 1e-4


@needs_kernel
@pytest.mark.parametrize("n", [1, 16])
def test_cuda_kernel_split_within_a_smaller_workspace(n):
    # A workspace sized for a smaller GPU (a TensorRT engine built elsewhere): fewer segments, same result.
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    batch, dim, length = 1, 8, 100_000
    full = native.workspace_size(batch, dim, length, n, sms)
    _, segments = native.scan_plan(batch, dim, length, n, 1, sms, full)
    small = segments // 2 * batch * dim * n * 8  # room for half the segments' (decay, state) pairs
    _, fewer = native.scan_plan(batch, dim, length, n, 1, sms, small)
    assert segments >= 4 and fewer == segments // 2
    g = torch.Generator().manual_seed(4)
    u, delta = torch.randn(batch, dim, length, generator=g), torch.randn(batch, dim, length, generator=g)
    A = -torch.exp(torch.randn(dim, n, generator=g))
    B, C = torch.randn(batch, 1, n, length, generator=g), torch.randn(batch, 1, n, length, generator=g)
    ref = selective_scan_ref(u, delta, A, B, C, delta_softplus=True)
    # Guard bytes past the given size must stay untouched.
    scratch = torch.full((small + 4096,), 0xA5, dtype=torch.uint8, device="cuda")
    out = cuda_kernel.selective_scan_cuda(u.cuda(), delta.cuda(), A.cuda(), B.cuda(), C.cuda(), delta_softplus=True,
                                          workspace=scratch[:small])
    assert rel_err(out.cpu(), ref) < 1e-5
    assert bool((scratch[small:] == 0xA5).all())


@needs_kernel
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 5e-3)])
@pytest.mark.parametrize("layout,shape,n", [("cross-2d", (2, 24, 17, 29), 1), ("cross-2d", (1, 192, 135, 240), 1),
                                            ("cross-2d", (1, 16, 9, 7), 16), ("bidirectional", (2, 64, 8161), 16),
                                            ("bidirectional", (1, 8, 1), 4)])
def test_fused_layouts_on_cuda_match_their_definitions(layout, shape, n, dtype, tol):
    # avssm_fused_scan_fwd (fused_scan.cu: the directions' copies in the workspace, the scan, the merge), as the
    # TensorRT plugin's version 2 runs it, against the definitions; 135 x 240 is VMamba-T stage 1 at 540p.
    from avssm.ops.bidirectional_scan import bidirectional_selective_scan_ref
    from avssm.ops.cross_scan import cross_selective_scan_ref

    g = torch.Generator().manual_seed(n + shape[1])
    cross = layout == "cross-2d"
    k = 4 if cross else 2
    b, d = shape[0], shape[1] if cross else shape[1] // 2
    places = shape[2:]
    u = torch.randn(shape, generator=g)
    delta = 0.5 * torch.randn((b, 4, d, *places) if cross else shape, generator=g)
    B, C = (torch.randn((b, k, n, *places), generator=g) for _ in range(2))
    A = -torch.exp(torch.randn(k * d, n, generator=g))
    D, bias = torch.randn(k * d, generator=g), 0.5 * torch.randn(k * d, generator=g)
    z = None if cross else torch.randn(b, d, shape[2], generator=g).to(dtype)
    u, delta, B, C = (t.to(dtype) for t in (u, delta, B, C))
    if cross:
        ref = cross_selective_scan_ref(u.float(), delta.float(), A, B.float(), C.float(), D=D, delta_bias=bias,
                                       delta_softplus=True)
    else:
        ref = bidirectional_selective_scan_ref(u.float(), delta.float(), A, B.float(), C.float(), D=D, z=z.float(),
                                               delta_bias=bias, delta_softplus=True)
    out = cuda_kernel.fused_scan_cuda(layout, u.cuda(), delta.cuda(), A.cuda(), B.cuda(), C.cuda(), D=D.cuda(),
                                      z=None if z is None else z.cuda(), delta_bias=bias.cuda(), delta_softplus=True)
    assert out.dtype == dtype and tuple(out.shape) == tuple(ref.shape)
    assert rel_err(out.float().cpu(), ref) < tol
