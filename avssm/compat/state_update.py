"""mamba_ssm's ``selective_state_update`` (one decoding step of the ``Mamba`` / ``Mamba2`` blocks' ``step``) on
tensors Triton cannot run: CPU tensors. CUDA tensors still take the Triton kernel.

    out = selective_state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, state_batch_indices)

updates ``state`` in place, ``state <- exp(dt * A) * state + dt * B * x``, and returns ``C . state + D * x``, gated
by ``silu(z)``; shapes as mamba_ssm documents them, with or without a heads dimension. Step decoding carries a
state from call to call, which an exported graph does not hold: under export it is one line that says so.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from avssm.compat import on_compiled_kernels
from avssm.compat.selective_scan_cuda import NotCoveredError


def state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, state_batch_indices=None):
    """One step of the selective scan from ``state`` (see the module); returns the output, updates ``state``."""
    if torch.onnx.is_in_onnx_export():
        raise NotCoveredError("selective_state_update (step-by-step decoding) cannot be exported: an exported graph "
                              "holds no state between calls; export the whole-sequence forward (no inference_params)")
    has_heads = state.dim() > 3

    s = state if has_heads else state.unsqueeze(1)   # add the heads dimension where the call has none
    if state_batch_indices is not None:
        s = s[state_batch_indices]
    x, dt, z = (None if t is None else (t if t.dim() == 3 else t.unsqueeze(1)) for t in (x, dt, z))
    A = A if A.dim() == 3 else A.unsqueeze(0)
    B, C = (t if t.dim() == 3 else t.unsqueeze(1) for t in (B, C))
    D, dt_bias = (None if t is None else (t if t.dim() == 2 else t.unsqueeze(0)) for t in (D, dt_bias))
    per_group = x.shape[1] // B.shape[1]
    B, C = (t.float().repeat_interleave(per_group, dim=1)[:, :, None, :] for t in (B, C))   # (batch, heads, 1, N)
    delta = dt.float() + (dt_bias.float() if dt_bias is not None else 0.0)
    delta = F.softplus(delta) if dt_softplus else delta
    new = s.float() * torch.exp(delta[..., None] * A.float()) + (delta * x.float())[..., None] * B
    if state_batch_indices is not None:
        (state if has_heads else state.unsqueeze(1))[state_batch_indices] = new.to(state.dtype)
    else:
        s.copy_(new)
    out = (new * C).sum(-1)
    if D is not None:
        out = out + D.float() * x.float()
    if z is not None:
        out = out * F.silu(z.float())
    out = out.to(x.dtype)
    return out if has_heads else out.squeeze(1)


def patch_selective_state_update(module) -> None:
    """mamba_ssm.ops.triton.selective_state_update: selective_state_update on CPU tensors and under export."""
    original = getattr(module, "selective_state_update", None)
    if not callable(original) or hasattr(original, "__wrapped__"):
        return

    def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, **kwargs):
        if on_compiled_kernels(x):
            return original(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, **kwargs)
        return state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, **kwargs)

    selective_state_update.__wrapped__ = original
    module.selective_state_update = selective_state_update
