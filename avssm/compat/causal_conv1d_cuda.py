"""Stand-in for the compiled ``causal_conv1d_cuda`` module of the causal-conv1d package, in PyTorch, on any device:
a depthwise causal convolution over the last axis, optionally followed by SiLU.

    x: (batch, dim, L)   weight: (dim, width)   bias: (dim,)   initial / final states: (batch, dim, width - 1)

The package changed these calls' arguments across releases; each is recognised by its argument count:

| release | causal_conv1d_fwd | causal_conv1d_bwd |
|---|---|---|
| 1.0 | (x, weight, bias, silu) -> out | (x, weight, bias, dout, dx, silu) -> [dx, dweight, dbias] |
| 1.1 | (x, weight, bias, seq_idx, silu) -> out | (x, weight, bias, dout, seq_idx, dx, silu) -> [dx, dweight, dbias] |
| 1.2 - 1.4 | (x, weight, bias, seq_idx, initial_states, final_states_out, silu) -> out | (x, weight, bias, dout, seq_idx, initial_states, dfinal_states, dx, return_dinitial_states, silu) -> [dx, dweight, dbias, dinitial_states] |
| 1.5 - 1.6 | (x, weight, bias, seq_idx, initial_states, out, final_states_out, silu), in place | (x, weight, bias, dout, seq_idx, initial_states, dfinal_states, dx, dweight, dbias, dinitial_states, silu), in place |

``seq_idx`` (packed variable-length sequences) is not covered: one line says so.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from avssm.compat.selective_scan_cuda import NotCoveredError


def convolve(x, weight, bias=None, initial_states=None, silu=False):
    """(out, final_states): out has x's dtype; final_states are the last width - 1 inputs (initial states first)."""
    batch, dim, _ = x.shape
    width = weight.shape[-1]
    pad = initial_states if initial_states is not None else x.new_zeros(batch, dim, width - 1)
    padded = torch.cat([pad.to(x.dtype), x], dim=-1)
    out = F.conv1d(padded.to(weight.dtype), weight[:, None, :], bias, groups=dim)
    out = F.silu(out) if silu else out
    return out.to(x.dtype), padded[..., padded.shape[-1] - (width - 1):]


def gradients(x, weight, bias, dout, initial_states=None, dfinal_states=None, silu=False):
    """(dx, dweight, dbias, dinitial_states) of :func:`convolve`, by autograd."""
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_() if t is not None else None for t in (x, weight, bias, initial_states)]
        out, final = convolve(*leaves, silu=silu)
        outputs, grads = [out], [dout]
        if dfinal_states is not None:
            outputs.append(final)
            grads.append(dfinal_states)
        wrt = [t for t in leaves if t is not None]
        found = iter(torch.autograd.grad(outputs, wrt, grads, allow_unused=True))
    return [(g if (g := next(found)) is not None else torch.zeros_like(t)) if t is not None else None
            for t in leaves]


def _no_seq_idx(seq_idx) -> None:
    if seq_idx is not None:
        raise NotCoveredError("avssm's causal_conv1d_cuda stand-in: seq_idx (packed variable-length sequences) is "
                              "not covered; covered: causal_conv1d_fwd/bwd/update on whole sequences")


@torch.no_grad()
def causal_conv1d_fwd(x, weight, bias, *args):
    if len(args) == 1:  # 1.0
        return convolve(x, weight, bias, silu=args[0])[0]
    _no_seq_idx(args[0])
    if len(args) == 2:  # 1.1
        return convolve(x, weight, bias, silu=args[1])[0]
    if len(args) == 4:  # 1.2 - 1.4: (seq_idx, initial_states, final_states_out, silu)
        out, final = convolve(x, weight, bias, args[1], silu=args[3])
        if args[2] is not None:
            args[2].copy_(final)
        return out
    if len(args) == 5:  # 1.5 - 1.6: (seq_idx, initial_states, out, final_states_out, silu), in place
        out, final = convolve(x, weight, bias, args[1], silu=args[4])
        args[2].copy_(out)
        if args[3] is not None:
            args[3].copy_(final)
        return None
    raise NotCoveredError(f"avssm's causal_conv1d_cuda stand-in: causal_conv1d_fwd with {3 + len(args)} arguments "
                          "matches no causal-conv1d release (1.0 to 1.6 are covered)")


def _into(buffer, value):
    if buffer is None:
        return value
    buffer.copy_(value)
    return buffer


def causal_conv1d_bwd(x, weight, bias, dout, *args):
    if len(args) == 2:  # 1.0: (dx, silu)
        dx, dweight, dbias, _ = gradients(x, weight, bias, dout, silu=args[1])
        return [_into(args[0], dx), dweight, dbias]
    _no_seq_idx(args[0])
    if len(args) == 3:  # 1.1: (seq_idx, dx, silu)
        dx, dweight, dbias, _ = gradients(x, weight, bias, dout, silu=args[2])
        return [_into(args[1], dx), dweight, dbias]
    if len(args) == 6:  # 1.2 - 1.4: (seq_idx, initial_states, dfinal_states, dx, return_dinitial_states, silu)
        dx, dweight, dbias, dinit = gradients(x, weight, bias, dout, args[1], args[2], silu=args[5])
        if args[4] and dinit is None:
            dinit = x.new_zeros(x.shape[0], x.shape[1], weight.shape[-1] - 1)
        return [_into(args[3], dx), dweight, dbias, dinit if args[4] else None]
    if len(args) == 8:  # 1.5 - 1.6: (seq_idx, initial_states, dfinal_states, dx, dweight, dbias, dinitial_states, silu)
        dx, dweight, dbias, dinit = gradients(x, weight, bias, dout, args[1], args[2], silu=args[7])
        for buffer, value in zip(args[3:7], (dx, dweight, dbias, dinit)):
            if buffer is not None:
                buffer.copy_(value if value is not None else torch.zeros_like(buffer))
        return None
    raise NotCoveredError(f"avssm's causal_conv1d_cuda stand-in: causal_conv1d_bwd with {4 + len(args)} arguments "
                          "matches no causal-conv1d release (1.0 to 1.6 are covered)")


@torch.no_grad()
def causal_conv1d_update(x, conv_state, weight, bias, *args):
    """One or a few new tokens x (batch, dim) or (batch, dim, L) against conv_state (batch, dim, state_len), which
    is shifted in place. 1.0 - 1.4: (silu) -> out; later: (out, silu, cache_seqlens, conv_state_indices), in place
    (cache_seqlens and conv_state_indices not covered) or (silu, cache_seqlens[, conv_state_indices]) -> out."""
    if len(args) == 4 and isinstance(args[0], torch.Tensor):
        out_buffer, silu, extra = args[0], args[1], args[2:]
    else:
        out_buffer, silu, extra = None, args[0], args[1:]
    if any(e is not None for e in extra):
        raise NotCoveredError("avssm's causal_conv1d_cuda stand-in: causal_conv1d_update with cache_seqlens or "
                              "conv_state_indices is not covered")
    single = x.dim() == 2
    tokens = x[..., None] if single else x
    width, length = weight.shape[-1], tokens.shape[-1]
    window = torch.cat([conv_state.to(tokens.dtype), tokens], dim=-1)
    out = F.conv1d(window[..., -(width - 1 + length):].to(weight.dtype), weight[:, None, :], bias,
                   groups=weight.shape[0])
    out = (F.silu(out) if silu else out).to(x.dtype)
    conv_state.copy_(window[..., -conv_state.shape[-1]:])
    out = out[..., 0] if single else out
    if out_buffer is None:
        return out
    out_buffer.copy_(out)
    return None
