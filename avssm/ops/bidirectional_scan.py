"""Vim's two scan directions in one operation, without flipped copies: direction 0 scans each sequence forwards,
direction 1 backwards, both reading their inputs where they lie, and the two outputs are averaged at each position
as Vim combines them.

    y = bidirectional_selective_scan(u, delta, A, B, C, D=D, z=z, delta_bias=bias, delta_softplus=True)

| tensor | shape | |
|---|---|---|
| u, delta | (batch, 2 * dim, L) | channel d is direction 0's, channel dim + d direction 1's; in sequence order |
| A | (2 * dim, N) | |
| B, C | (batch, 2, N, L) | direction k's, in sequence order |
| D, delta_bias | (2 * dim,) | optional |
| z | (batch, dim, L) | optional: the SiLU gate of both directions at each position |
| y | (batch, dim, L) | (direction 0's output + direction 1's output) / 2 at each position |

The specification is :func:`bidirectional_selective_scan_ref`, the definition written out: direction 1's inputs
flipped, the reference scan, its output flipped back. :func:`bidirectional_selective_scan` computes it with the
compiled CPU kernel (avssm/csrc/cpu/bidirectional_scan_cpu.c) for inference on the CPU, and through the flips
and :func:`avssm.ops.selective_scan` elsewhere (autograd, CUDA). Under ``torch.onnx.export`` it is one
``SelectiveScan`` node of layout ``bidirectional`` (avssm/csrc/trt/README.md).
"""
from __future__ import annotations

import torch

from avssm.graph.scan_node import LAYOUT_BIDIRECTIONAL
from avssm.ops.selective_scan import _needs_grad, _value, selective_scan, selective_scan_ref
from avssm.ops.selective_scan_onnx import fused_scan_onnx


def _check(u, delta, A, B, C, z) -> None:
    if u.dim() != 3 or u.shape[1] % 2:
        raise ValueError(f"bidirectional_selective_scan: u must be (batch, 2 * dim, L), got {tuple(u.shape)}")
    b, d2, L = u.shape
    n = A.shape[-1]
    expected = [("delta", delta, (b, d2, L)), ("A", A, (d2, n)), ("B", B, (b, 2, n, L)), ("C", C, (b, 2, n, L))]
    if z is not None:
        expected.append(("z", z, (b, d2 // 2, L)))
    for name, t, shape in expected:
        if tuple(t.shape) != shape:
            raise ValueError(f"bidirectional_selective_scan: {name} must be {shape} for u {tuple(u.shape)}, "
                             f"got {tuple(t.shape)}")


def _through_flips(scan, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    d = u.shape[1] // 2

    def backward_flipped(t, axis_split):  # direction 1's half of t, flipped along L
        first, second = t.split(axis_split, dim=1)
        return torch.cat([first, second.flip(-1)], dim=1)

    zz = None if z is None else torch.cat([z, z.flip(-1)], dim=1)
    y = scan(backward_flipped(u, d), backward_flipped(delta, d), A, backward_flipped(B, 1), backward_flipped(C, 1),
             D=D, z=zz, delta_bias=delta_bias, delta_softplus=delta_softplus)
    y_f, y_b = y.chunk(2, dim=1)
    return (y_f + y_b.flip(-1)) / 2


def _trace_value(u, delta, A, B, C, D, z, delta_bias, delta_softplus):  # the exported node's value
    return _through_flips(_value, u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def bidirectional_selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The definition: direction 1 flipped, the reference scan, flipped back, the two averaged."""
    _check(u, delta, A, B, C, z)
    return _through_flips(selective_scan_ref, u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def bidirectional_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """:func:`bidirectional_selective_scan_ref`'s result, by the fastest path available (see the module)."""
    _check(u, delta, A, B, C, z)
    if torch.onnx.is_in_onnx_export():
        return fused_scan_onnx(_trace_value, LAYOUT_BIDIRECTIONAL, u, delta, A, B, C, D=D, z=z,
                               delta_bias=delta_bias, delta_softplus=delta_softplus)
    if u.device.type == "cpu" and not _needs_grad(u, delta, A, B, C, D, z, delta_bias):
        from avssm.ops import cpu_kernel

        if cpu_kernel.available():
            return cpu_kernel.bidirectional_selective_scan_cpu(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                                                               delta_softplus=delta_softplus)
    return _through_flips(selective_scan, u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def direction_inputs(x, conv1d, x_proj, dt_proj, d_state: int, backward: bool = False):
    """Vim's (and mamba_ssm's) inputs of one scan direction from x (batch, dim, L): the causal depthwise
    ``conv1d`` and SiLU give u; ``x_proj`` gives dt, B and C; ``dt_proj``'s weight gives delta (its bias goes
    into the scan as delta_bias). ``backward``: the direction that walks the sequence backwards, its inputs in
    sequence order (the causal convolution of the flipped sequence, flipped back, is the anti-causal one with the
    taps reversed); otherwise x is already in the direction's order. Returns u, delta (batch, dim, L) and B, C
    (batch, N, L)."""
    import torch.nn.functional as F

    length, k = x.shape[-1], conv1d.weight.shape[-1]
    if backward:
        u = F.silu(F.conv1d(x, conv1d.weight.flip(-1), conv1d.bias, padding=k - 1,
                            groups=conv1d.weight.shape[0])[..., k - 1:k - 1 + length])
    else:
        u = F.silu(F.conv1d(x, conv1d.weight, conv1d.bias, padding=k - 1, groups=conv1d.weight.shape[0])[..., :length])
    x_dbl = F.linear(u.transpose(1, 2), x_proj.weight)  # (B, L, R + 2N)
    rank = x_dbl.shape[-1] - 2 * d_state
    dt, Bm, Cm = torch.split(x_dbl, [rank, d_state, d_state], dim=-1)
    delta = (dt @ dt_proj.weight.t()).transpose(1, 2)
    return u, delta, Bm.transpose(1, 2), Cm.transpose(1, 2)


def projected_bidirectional_scan(block, x, z):
    """Vim's bimamba v2 mixer between in_proj and out_proj, as one operation: x and z (batch, dim, L) -> the two
    directions' gated outputs averaged, (batch, dim, L). ``block`` holds the parameters under Vim's names (its
    Mamba block, avssm's BiMambaMixer): conv1d / conv1d_b, x_proj / x_proj_b, dt_proj / dt_proj_b, A_log /
    A_b_log, D / D_b, and d_state."""
    n = block.d_state
    u_f, dt_f, B_f, C_f = direction_inputs(x, block.conv1d, block.x_proj, block.dt_proj, n)
    u_b, dt_b, B_b, C_b = direction_inputs(x, block.conv1d_b, block.x_proj_b, block.dt_proj_b, n, backward=True)
    return bidirectional_selective_scan(
        torch.cat([u_f, u_b], 1), torch.cat([dt_f, dt_b], 1),
        -torch.exp(torch.cat([block.A_log, block.A_b_log], 0).float()),
        torch.stack([B_f, B_b], 1), torch.stack([C_f, C_b], 1),
        D=torch.cat([block.D, block.D_b]).float(), z=z,
        delta_bias=torch.cat([block.dt_proj.bias, block.dt_proj_b.bias]).float(), delta_softplus=True,
    )
