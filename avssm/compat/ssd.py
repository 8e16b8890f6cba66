"""mamba_ssm 2.x's Mamba2 (SSD) on tensors Triton cannot run: CPU tensors, and any tensor while exporting.

The SSD is a selective scan with a scalar A per head, dt per head and B / C shared by the heads of a group, so it
runs on avssm's scan (one SelectiveScan node when exported), channel ``h * headdim + p`` being head h's p-th:

    mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, D, z, dt_bias, ..., dt_softplus, dt_limit)
      x: (b, L, heads, headdim)  dt: (b, L, heads)  A: (heads,)  B, C: (b, L, groups, N)  -> (b, L, heads, headdim)

``mamba_split_conv1d_scan_combined`` (Mamba2's memory-efficient path) runs :func:`split_conv1d_scan`: the depthwise
convolution, the same scan and the module's gated ``rmsnorm_fn`` over groups of ``dim // ngroups`` channels, as the
kernel normalizes them (mamba_ssm 2.3.2's own ``mamba_split_conv1d_scan_ref`` normalizes over all channels, which
differs from the kernel where ngroups > 1). The gated norms of
``layernorm_gated`` run its ``rms_norm_ref``. CUDA tensors outside export still take the Triton kernels.
``initial_states``, ``seq_idx`` and variable-length states are not covered (one line says so).
"""
from __future__ import annotations

import torch.nn.functional as F

from avssm.compat import on_compiled_kernels
from avssm.compat.selective_scan_cuda import NotCoveredError
from avssm.ops import selective_scan


def _not_covered(**given) -> None:
    named = [name for name, value in given.items() if value not in (None, False)]
    if named:
        raise NotCoveredError(f"avssm's SSD stand-in: {', '.join(named)} not covered; covered: whole sequences "
                              "from a zero state, with D, z, dt_bias, dt_softplus, dt_limit and the final state")


def ssd_scan(x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, dt_limit=(0.0, float("inf")),
             return_final_states=False):
    batch, length, heads, headdim = x.shape
    n = B.shape[3]
    delta = dt.float() + (dt_bias.float() if dt_bias is not None else 0.0)
    delta = F.softplus(delta) if dt_softplus else delta
    if tuple(dt_limit) != (0.0, float("inf")):
        delta = delta.clamp(min=dt_limit[0], max=dt_limit[1])
    channels = heads * headdim
    u = x.reshape(batch, length, channels).transpose(1, 2)
    delta = delta[..., None].expand(batch, length, heads, headdim).reshape(batch, length, channels).transpose(1, 2)
    A_full = A.float()[:, None, None].expand(heads, headdim, n).reshape(channels, n)
    D_full = None if D is None else (D.float()[:, None].expand(heads, headdim) if D.dim() == 1 else D.float()).reshape(-1)
    gate = None if z is None else z.reshape(batch, length, channels).transpose(1, 2)
    result = selective_scan(u, delta.to(u.dtype), A_full, B.permute(0, 2, 3, 1), C.permute(0, 2, 3, 1), D=D_full,
                            z=gate, return_last_state=return_final_states)
    out, state = result if return_final_states else (result, None)
    out = out.transpose(1, 2).reshape(batch, length, heads, headdim)
    return (out, state.reshape(batch, heads, headdim, n)) if return_final_states else out


def split_conv1d_scan(zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A, D, dt_limit=(0.0, float("inf")),
                      activation="silu", rmsnorm_weight=None, rmsnorm_eps=1e-6, outproj_weight=None, outproj_bias=None,
                      headdim=None, ngroups=1, norm_before_gate=True, rmsnorm_fn=None):
    """mamba_split_conv1d_scan_combined's result: zxbcdt (batch, L, 2 * dim + 2 * ngroups * N + heads) split into
    the gate z, the convolved x / B / C and dt; the SSD; the gated norm per group (``rmsnorm_fn``); the projection."""
    from avssm.compat.causal_conv1d_cuda import convolve

    heads, headdim = (D.shape[0], headdim) if D.dim() == 1 else D.shape
    batch, length, width = zxbcdt.shape
    dim = heads * headdim
    n = (width - 2 * dim - heads) // ngroups // 2
    z, xbc, dt = zxbcdt.split([dim, dim + 2 * ngroups * n, heads], dim=-1)
    xbc = convolve(xbc.transpose(1, 2), conv1d_weight, conv1d_bias, silu=activation in ("silu", "swish"))[0]
    x, B, C = xbc.transpose(1, 2).split([dim, ngroups * n, ngroups * n], dim=-1)
    z = z.reshape(batch, length, heads, headdim)
    out = ssd_scan(x.reshape(batch, length, heads, headdim), dt.to(x.dtype), A, B.reshape(batch, length, ngroups, n),
                   C.reshape(batch, length, ngroups, n), D.float(), None if rmsnorm_weight is not None else z,
                   dt_bias, True, dt_limit)
    out = out.reshape(batch, length, dim)
    if rmsnorm_weight is not None:
        out = rmsnorm_fn(out, rmsnorm_weight, None, z=z.reshape(batch, length, dim), eps=rmsnorm_eps,
                         group_size=dim // ngroups, norm_before_gate=norm_before_gate)
    return F.linear(out, outproj_weight, outproj_bias) if outproj_weight is not None else out


def patch_ssd_combined(module) -> None:
    """mamba_ssm.ops.triton.ssd_combined: mamba_chunk_scan_combined and mamba_split_conv1d_scan_combined."""
    chunk_scan = getattr(module, "mamba_chunk_scan_combined", None)
    if callable(chunk_scan) and not hasattr(chunk_scan, "__wrapped__"):
        def mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
                                      seq_idx=None, cu_seqlens=None, dt_softplus=False, dt_limit=(0.0, float("inf")),
                                      return_final_states=False, return_varlen_states=False):
            if on_compiled_kernels(x):
                return chunk_scan(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, seq_idx, cu_seqlens,
                                  dt_softplus, dt_limit, return_final_states, return_varlen_states)
            _not_covered(initial_states=initial_states, seq_idx=seq_idx, cu_seqlens=cu_seqlens,
                         return_varlen_states=return_varlen_states)
            return ssd_scan(x, dt, A, B, C, D, z, dt_bias, dt_softplus, dt_limit, return_final_states)

        mamba_chunk_scan_combined.__wrapped__ = chunk_scan
        module.mamba_chunk_scan_combined = mamba_chunk_scan_combined
    split = getattr(module, "mamba_split_conv1d_scan_combined", None)
    if callable(split) and not hasattr(split, "__wrapped__"):
        def mamba_split_conv1d_scan_combined(zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A, D, chunk_size,
                                             initial_states=None, seq_idx=None, dt_limit=(0.0, float("inf")),
                                             return_final_states=False, **kwargs):
            if on_compiled_kernels(zxbcdt):
                return split(zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A, D, chunk_size, initial_states, seq_idx,
                             dt_limit, return_final_states, **kwargs)
            _not_covered(initial_states=initial_states, seq_idx=seq_idx, return_final_states=return_final_states)
            return split_conv1d_scan(zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A, D, dt_limit,
                                     rmsnorm_fn=module.rmsnorm_fn, **kwargs)

        mamba_split_conv1d_scan_combined.__wrapped__ = split
        module.mamba_split_conv1d_scan_combined = mamba_split_conv1d_scan_combined


def patch_layernorm_gated(module) -> None:
    """mamba_ssm.ops.triton.layernorm_gated: rmsnorm_fn (RMSNormGated, Mamba2's norm) through its rms_norm_ref."""
    original, reference = getattr(module, "rmsnorm_fn", None), getattr(module, "rms_norm_ref", None)
    if not (callable(original) and callable(reference)) or hasattr(original, "__wrapped__"):
        return

    def rmsnorm_fn(x, weight, bias, z=None, eps=1e-6, group_size=None, norm_before_gate=True):
        if on_compiled_kernels(x):
            return original(x, weight, bias, z, eps, group_size, norm_before_gate)
        return reference(x, weight, bias, z=z, eps=eps, group_size=group_size, norm_before_gate=norm_before_gate,
                         upcast=True).to(x.dtype)

    rmsnorm_fn.__wrapped__ = original
    module.rmsnorm_fn = rmsnorm_fn
