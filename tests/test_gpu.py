"""GPU checks (skipped without CUDA): the scan and the models on CUDA agree with the CPU."""
import os

import pytest
import torch

from avssm.models import create_model
from avssm.ops import selective_scan, selective_scan_ref
from conftest import FIXTURES, rel_err

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to PyTorch)")]


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
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    model = create_model(name).eval()
    x = torch.randn(1, 3, 1080, 1920)
    with torch.no_grad():
        boxes_cpu, scores_cpu = model(x)
        boxes_gpu, scores_gpu = model.cuda()(x.cuda())
    assert rel_err(boxes_gpu.cpu(), boxes_cpu) < 1e-4
    assert rel_err(scores_gpu.cpu(), scores_cpu) < 1e-4
