"""The selective scan's contract, shared by every path that computes it (avssm.ops.selective_scan, the CPU and
CUDA kernels' wrappers): the shape checks, delta's preparation and the output's D skip and z gate."""
from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def check_shapes(u, delta, A, B, C, D, z, delta_bias):
    """One line naming the tensor whose shape does not fit u (batch, dim, L), A (dim, N) and B, C (batch, groups, N, L)."""
    if torch.jit.is_tracing():  # shapes are symbolic while exporting; the checks ran in eager mode
        return
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, dim, L), got {tuple(u.shape)}")
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan: delta must be {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan: A must be ({dim}, N), got {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.dim() != 4 or t.shape[0] != batch or t.shape[2] != n or t.shape[3] != length:
            raise ValueError(
                f"selective_scan: {name} must be ({batch}, groups, {n}, {length}), got {tuple(t.shape)}")
    if B.shape[1] != C.shape[1] or dim % B.shape[1] != 0:
        raise ValueError(f"selective_scan: groups of B {B.shape[1]} and C {C.shape[1]} must match and divide dim {dim}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z must be {tuple(u.shape)}, got {tuple(z.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (dim,):
            raise ValueError(f"selective_scan: {name} must be ({dim},), got {tuple(t.shape)}")


def prepare_delta(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    """delta in fp32, plus delta_bias, through softplus when asked."""
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)  # beta 1, threshold 20, as mamba_ssm
    return delta


def finish(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None, dtype_in: torch.dtype) -> Tensor:
    """The scan's output y (fp32) plus D * u, gated by silu(z), in the input's dtype."""
    if D is not None:
        y = y + D.float()[:, None] * u.float()
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype_in)
