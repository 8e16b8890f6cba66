"""VMamba's four-direction selective scan on the (H, W) map, cross-scan and cross-merge included: one operation
that reads u, delta, B and C where they lie in the map and writes the merged output once.

    y = cross_selective_scan(u, delta, A, B, C, D=D, delta_bias=bias, delta_softplus=True)

| tensor | shape | |
|---|---|---|
| u | (batch, dim, H, W) | the map (the same values for every direction) |
| delta | (batch, 4, dim, H, W) | direction k's delta at each position |
| A | (4 * dim, N) | direction k's channel d is row k * dim + d |
| B, C | (batch, 4, N, H, W) | direction k's input and output projections at each position |
| D, delta_bias | (4 * dim,) | optional |
| y | (batch, dim, H, W) | sum over the four directions of their scan outputs at each position |

Direction 0 walks the map row-major, 1 column-major, 2 and 3 the same backwards. The specification is
:func:`cross_selective_scan_ref`, written from the definition: the explicit traversal copies, the reference scan,
and the sum back at each position. :func:`cross_selective_scan` computes the same with the compiled CPU kernel
(avssm/csrc/cpu/cross_scan_cpu.c: no copies) for inference on the CPU, and through the copies and
:func:`avssm.ops.selective_scan` elsewhere (autograd, CUDA). Under ``torch.onnx.export`` it is one
``SelectiveScan`` node of layout ``cross-2d`` (avssm/csrc/trt/README.md).
"""
from __future__ import annotations

import torch

from avssm.graph.scan_node import LAYOUT_CROSS_2D
from avssm.ops.selective_scan import _needs_grad, _value, selective_scan, selective_scan_ref
from avssm.ops.selective_scan_onnx import fused_scan_onnx

K = 4  # directions


def traverse(x: torch.Tensor) -> torch.Tensor:
    """(batch, 4, C, H, W) -> (batch, 4, C, L): direction k's map in direction k's order."""
    b, _, c, h, w = x.shape
    rows = x.flatten(3)
    cols = x.transpose(3, 4).flatten(3)
    return torch.stack([rows[:, 0], cols[:, 1], rows[:, 2].flip(-1), cols[:, 3].flip(-1)], dim=1)


def merge(ys: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(batch, 4, C, L) in each direction's order -> (batch, C, H, W): (y0 + y2) + (y1 + y3) at each position."""
    b, _, c, _ = ys.shape
    rows = ys[:, 0] + ys[:, 2].flip(-1)
    cols = ys[:, 1] + ys[:, 3].flip(-1)
    return rows.view(b, c, h, w) + cols.view(b, c, w, h).transpose(2, 3)


def _check(u, delta, A, B, C) -> None:
    if u.dim() != 4:
        raise ValueError(f"cross_selective_scan: u must be (batch, dim, H, W), got {tuple(u.shape)}")
    b, d, h, w = u.shape
    n = A.shape[-1]
    for name, t, shape in (("delta", delta, (b, K, d, h, w)), ("A", A, (K * d, n)), ("B", B, (b, K, n, h, w)),
                           ("C", C, (b, K, n, h, w))):
        if tuple(t.shape) != shape:
            raise ValueError(f"cross_selective_scan: {name} must be {shape} for u {tuple(u.shape)}, got {tuple(t.shape)}")


def _through_copies(scan, u, delta, A, B, C, D, delta_bias, delta_softplus):
    b, d, h, w = u.shape
    L = h * w
    us = traverse(u.unsqueeze(1).expand(b, K, d, h, w)).reshape(b, K * d, L)
    ys = scan(us, traverse(delta).reshape(b, K * d, L), A, traverse(B), traverse(C), D=D, delta_bias=delta_bias,
              delta_softplus=delta_softplus)
    return merge(ys.view(b, K, d, L), h, w)


def _trace_value(u, delta, A, B, C, D, z, delta_bias, delta_softplus):  # the exported node's value
    return _through_copies(_value, u, delta, A, B, C, D, delta_bias, delta_softplus)


def cross_selective_scan_ref(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False):
    """The definition: every direction's traversal copied out, scanned by the reference, summed back."""
    _check(u, delta, A, B, C)
    return _through_copies(selective_scan_ref, u, delta, A, B, C, D, delta_bias, delta_softplus)


def cross_selective_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False):
    """:func:`cross_selective_scan_ref`'s result, by the fastest path available (see the module's docstring)."""
    _check(u, delta, A, B, C)
    if torch.onnx.is_in_onnx_export():
        return fused_scan_onnx(_trace_value, LAYOUT_CROSS_2D, u, delta, A, B, C, D=D, delta_bias=delta_bias,
                               delta_softplus=delta_softplus)
    if u.device.type == "cpu" and not _needs_grad(u, delta, A, B, C, D, delta_bias):
        from avssm.ops import cpu_kernel

        if cpu_kernel.available():
            return cpu_kernel.cross_selective_scan_cpu(u, delta, A, B, C, D=D, delta_bias=delta_bias,
                                                       delta_softplus=delta_softplus)
    return _through_copies(selective_scan, u, delta, A, B, C, D, delta_bias, delta_softplus)


def projected_cross_scan(x, x_proj_weight, dt_projs_weight, A_logs, Ds, dt_projs_bias, x_proj_bias=None):
    """VMamba's SS2D scan of a (batch, dim, H, W) map, its projections included: each direction's x_proj
    (``x_proj_weight`` (4, R + 2N, dim), ``x_proj_bias`` (4, R + 2N)) and dt_proj (``dt_projs_weight`` (4, dim, R))
    are pointwise, so they run on the map once for every direction; then :func:`cross_selective_scan` with
    A = -exp(``A_logs``), D = ``Ds`` and delta_bias = ``dt_projs_bias`` (fp32), softplus on delta. Returns
    (batch, dim, H, W) in fp32, what the official code's cross-scan, projections, scan and cross-merge give."""
    b, d, h, w = x.shape
    k, n, r = x_proj_weight.shape[0], A_logs.shape[1], dt_projs_weight.shape[2]
    x_dbl = torch.matmul(x_proj_weight, x.flatten(2).unsqueeze(1))  # (B, 4, R + 2N, L), map order
    if x_proj_bias is not None:
        x_dbl = x_dbl + x_proj_bias.view(1, k, -1, 1)
    dts, Bs, Cs = torch.split(x_dbl, [r, n, n], dim=2)
    dts = torch.matmul(dt_projs_weight, dts)  # (B, 4, dim, L)
    return cross_selective_scan(
        x, dts.view(b, k, d, h, w), -torch.exp(A_logs.float()), Bs.reshape(b, k, n, h, w), Cs.reshape(b, k, n, h, w),
        D=Ds.float(), delta_bias=dt_projs_bias.float().view(-1), delta_softplus=True,
    ).float()
