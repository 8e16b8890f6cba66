"""Stand-in for mamba_ssm's compiled ``selective_scan_cuda`` module: ``fwd`` and ``bwd`` with its contract,
computed by avssm's scan (:func:`avssm.ops.selective_scan`) on any device.

    out, x, *rest = fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        out: (batch, dim, L), u's dtype, before the z gate;  rest: [out * silu(z)] when z is given
        x: (batch, dim, n_chunks, 2 * N) fp32, one entry per 2048 tokens: at [..., 0::2] the product of
           exp(delta * A) from the first token to the chunk's last, at [..., 1::2] the state there
           (callers read the last state as x[:, :, -1, 1::2])
    du, ddelta, dA, dB, dC, dD, ddelta_bias, *rest = bwd(u, delta, A, B, C, D, z, delta_bias, dout, x, out, dz,
                                                          delta_softplus, recompute_out_z)
        dout: the gradient of the gated output when z is given; rest: [dz] with z (written into ``dz`` when a
        buffer is given), then [out * silu(z)] with ``recompute_out_z``; dD and ddelta_bias are None without D
        and delta_bias.

B and C are (batch, groups, N, L) or constant (dim, N). Complex A is not covered (one line says so).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from avssm.ops import selective_scan

CHUNK = 2048  # the CUDA kernel's chunk: x holds one entry per chunk


class NotCoveredError(RuntimeError):
    """A call of the real module that the stand-in does not cover; the message names it and what is covered."""


def _check(A, B, C) -> None:
    if A.is_complex():
        raise NotCoveredError("avssm's selective_scan_cuda stand-in covers real A only (this A is complex); "
                              "covered: fwd and bwd with real A, B and C of (batch, groups, N, L) or (dim, N)")
    for name, t in (("B", B), ("C", C)):
        if t.dim() not in (2, 4):
            raise NotCoveredError(f"avssm's selective_scan_cuda stand-in: {name} has shape {tuple(t.shape)}; "
                                  "covered: (batch, groups, N, L) or constant (dim, N)")


def _variable(t: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """B or C as (batch, groups, N, L): a constant (dim, N) one is one group per channel, the same at every token."""
    return t if t.dim() == 4 else t[None, :, :, None].expand(batch, -1, -1, length)


def _scan(u, delta, A, B, C, D, delta_bias, delta_softplus, last_state=False):
    batch, _, length = u.shape
    return selective_scan(u, delta, A, _variable(B, batch, length), _variable(C, batch, length), D=D,
                          delta_bias=delta_bias, delta_softplus=delta_softplus, return_last_state=last_state)


def _chunk_states(u, delta, A, B, C, delta_bias, delta_softplus, final) -> torch.Tensor:
    """x: per chunk of CHUNK tokens, (product of exp(delta * A) since the first token, state) interleaved. ``final``
    is the state after the last token (the whole scan's last state), the last chunk's entry."""
    batch, dim, length = u.shape
    dt = delta.float() + (delta_bias.float()[:, None] if delta_bias is not None else 0.0)
    dt = F.softplus(dt) if delta_softplus else dt
    total = torch.cumsum(dt, dim=-1)  # (batch, dim, L): sum of deltas up to each token
    A = A.float()
    products, states = [], []
    state = None
    for start in range(0, max(length, 1), CHUNK):
        end = min(start + CHUNK, length)
        products.append(torch.exp(total[..., end - 1, None] * A))
        if end == length:
            states.append(final.float())
            break

        def cut(t, piece=slice(start, end)):
            return t if t.dim() == 2 else t[..., piece]  # a constant (dim, N) B or C has no tokens

        # the state from a zero start within the chunk, then the carried state decayed across the chunk
        _, local = _scan(cut(u), cut(delta), A, cut(B), cut(C), None, delta_bias, delta_softplus, last_state=True)
        within = total[..., end - 1] - (total[..., start - 1] if start else 0.0)  # (batch, dim)
        state = local if state is None else local + torch.exp(within[..., None] * A) * state
        states.append(state)
    x = torch.stack([torch.stack(products, dim=2), torch.stack(states, dim=2)], dim=-1)  # (b, d, chunks, N, 2)
    return x.reshape(batch, dim, len(states), 2 * A.shape[1]).contiguous()


@torch.no_grad()
def fwd(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    _check(A, B, C)
    if torch.onnx.is_in_onnx_export():  # the scan is one SelectiveScan node; an exported graph has no chunk states
        out = _scan(u, delta, A, B, C, D, delta_bias, delta_softplus)
        batch, dim, length = u.shape
        x = u.new_zeros(batch, dim, (int(length) + CHUNK - 1) // CHUNK, 2 * A.shape[1], dtype=torch.float32)
    else:  # one pass gives the output and the last chunk's state; earlier chunks' states are scanned on their own
        out, final = _scan(u, delta, A, B, C, D, delta_bias, delta_softplus, last_state=True)
        x = _chunk_states(u, delta, A, B, C, delta_bias, delta_softplus, final)
    out = out.to(delta.dtype)
    if z is None:
        return [out, x]
    return [out, x, (out.float() * F.silu(z.float())).to(z.dtype)]


def bwd(u, delta, A, B, C, D, z, delta_bias, dout, x, out, dz=None, delta_softplus=False, recompute_out_z=False):
    _check(A, B, C)
    given = [u, delta, A, B, C, D, z, delta_bias]
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_() if t is not None else None for t in given]
        u_, delta_, A_, B_, C_, D_, z_, bias_ = leaves
        y = _scan(u_, delta_, A_, B_, C_, D_, bias_, delta_softplus)
        target = y.float() * F.silu(z_.float()) if z is not None else y.float()
        wrt = [t for t in leaves if t is not None]
        grads = iter(torch.autograd.grad(target, wrt, dout.float(), allow_unused=True))
    found = [next(grads) if t is not None else None for t in leaves]
    du, ddelta, dA, dB, dC, dD, dz_, ddelta_bias = [
        (g if g is not None else torch.zeros_like(t)).to(t.dtype) if t is not None else None
        for g, t in zip(found, given)]
    result = [du, ddelta, dA, dB, dC, dD, ddelta_bias]
    if z is not None:
        if dz is not None:
            dz.copy_(dz_)  # the caller's buffer (mamba_inner_fn passes a view into its dxz)
            dz_ = dz
        result.append(dz_)
    if recompute_out_z:
        result.append((y.detach().float() * F.silu(z.float())).to(z.dtype) if z is not None else None)
    return result
