"""The selective scan (S6) of Mamba, with mamba_ssm's exact semantics.

One public entry point, :func:`selective_scan`. Two implementations sit behind it:

* :func:`selective_scan_ref` -- a short sequential loop that reads as the specification.
* :func:`selective_scan_chunked` -- the fast PyTorch path used by default. The sequence is cut into
  chunks that are scanned in parallel from a zero state; the chunk states are then carried across
  chunk boundaries and each chunk's output is corrected by the carried state. Every exponent it
  takes is ``A * (a sum of non-negative deltas)`` with ``A <= 0`` in trained models, so nothing
  overflows for any L, and no buffer of size ``dim * L * N`` for the whole sequence is formed.
* :func:`selective_scan_parallel` -- the training path: no Python loop over time at all (a few dozen
  large tensor ops, so autograd on a GPU is not launch-bound), at the price of ``dim * N * L * 4``
  floats of memory. Each block of 4 steps is solved as a 4x4 lower-triangular decay matrix, and
  the blocks' end states are scanned the same way, recursively (log4(L) levels).

Shapes (mamba_ssm convention):
    u, delta, z: (batch, dim, L)        A: (dim, N) fp32
    B, C: (batch, groups, N, L)         channel d uses group d // (dim // groups)
    D, delta_bias: (dim,) fp32
Math is fp32; the output has u's dtype; the last state (batch, dim, N) stays fp32.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from avssm.graph.scan_node import chunk_size as scan_chunk_size
from avssm.ops.scan_contract import check_shapes as _check_shapes
from avssm.ops.scan_contract import finish as _finish
from avssm.ops.scan_contract import prepare_delta as _prepare_delta
from avssm.ops.selective_scan_onnx import selective_scan_onnx

Tensor = torch.Tensor


def _expand_groups(t: Tensor, dim: int) -> Tensor:
    """(batch, groups, N, L) -> (batch, dim, N, L) as a broadcast view (no copy)."""
    batch, groups, n, length = t.shape
    per_group = dim // groups
    return t[:, :, None].expand(batch, groups, per_group, n, length).reshape(batch, dim, n, length) \
        if groups > 1 else t.expand(batch, dim, n, length)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """The specification: one step per token. Slow; for tests and for reading."""
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    dtype_in = u.dtype
    batch, dim, length = u.shape
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    A = A.float()
    Bd = _expand_groups(B.float(), dim)  # (batch, dim, N, L)
    Cd = _expand_groups(C.float(), dim)
    x = delta * u.float()
    h = u.new_zeros((batch, dim, A.shape[1]), dtype=torch.float32)
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, :, t, None] * A) * h + x[:, :, t, None] * Bd[..., t]
        ys.append((h * Cd[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros((batch, dim, 0), dtype=torch.float32)
    out = _finish(y, u, D, z, dtype_in)
    return (out, h) if return_last_state else out


def selective_scan_chunked(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                           return_last_state=False, chunk_size: int | None = None):
    """Fast PyTorch path: chunks scanned in parallel, then the chunk states carried across.

    Differentiable and device-agnostic; work is O(batch*dim*N*L) with about sqrt(L) Python steps.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    with torch.autocast(u.device.type, enabled=False):  # fp32 math even inside an autocast region
        return _scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, chunk_size)


def _scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, chunk_size):
    dtype_in = u.dtype
    batch, dim, length = u.shape
    n = A.shape[1]
    groups = B.shape[1]
    if length == 0:
        out = _finish(u.new_zeros((batch, dim, 0), dtype=torch.float32), u, D, z, dtype_in)
        return (out, u.new_zeros((batch, dim, n), dtype=torch.float32)) if return_last_state else out
    T = chunk_size or scan_chunk_size(length)
    nchunks = -(-length // T)
    pad = nchunks * T - length

    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    x = delta * u.float()
    Bf, Cf = B.float(), C.float()
    if pad:
        # Padded tokens have delta = 0 (decay 1) and x = 0: they leave the state unchanged.
        delta = F.pad(delta, (0, pad))
        x = F.pad(x, (0, pad))
        Bf = F.pad(Bf, (0, pad))
        Cf = F.pad(Cf, (0, pad))
    A = A.float()
    per_group = dim // groups

    # Views indexed [batch, group, channel-in-group, chunk, step] so that B/C broadcast per group.
    delta_c = delta.view(batch, groups, per_group, nchunks, T)
    x_c = x.view(batch, groups, per_group, nchunks, T)
    B_c = Bf.view(batch, groups, n, nchunks, T)
    C_c = Cf.view(batch, groups, n, nchunks, T)
    A_g = A.view(groups, per_group, n)

    # 1) Scan every chunk from a zero state; keep y and the chunk's cumulative decay exponent.
    h = x.new_zeros((batch, groups, per_group, n, nchunks))
    ys = []
    for t in range(T):
        dA = torch.exp(delta_c[..., t].unsqueeze(3) * A_g[None, :, :, :, None])  # (b,g,p,n,c)
        h = dA * h + x_c[..., t].unsqueeze(3) * B_c[..., t].unsqueeze(2)
        ys.append(torch.einsum("bgpnc,bgnc->bgpc", h, C_c[..., t]))
    y = torch.stack(ys, dim=-1)  # (b,g,p,c,T)
    h_local_end = h  # state at the end of each chunk, from zero

    # 2) Carry the state across chunk boundaries: h_in[c] is the state entering chunk c.
    delta_cum = delta_c.cumsum(-1)  # within-chunk cumulative delta, (b,g,p,c,T)
    chunk_decay = torch.exp(delta_cum[..., -1].unsqueeze(3) * A_g[None, :, :, :, None])  # (b,g,p,n,c)
    h_in = []
    carry = x.new_zeros((batch, groups, per_group, n))
    for c in range(nchunks):
        h_in.append(carry)
        carry = chunk_decay[..., c] * carry + h_local_end[..., c]
    h_in = torch.stack(h_in, dim=-1)  # (b,g,p,n,c)

    # 3) Correct each chunk's output by its incoming state: y[t] += sum_n C[t] exp(A * cum[t]) h_in.
    #    Done chunk by chunk so no (dim, N, L) buffer is formed.
    corr = []
    for c in range(nchunks):
        decay = torch.exp(delta_cum[:, :, :, c].unsqueeze(3) * A_g[None, :, :, :, None])  # (b,g,p,n,T)
        corr.append(torch.einsum("bgpnt,bgpn,bgnt->bgpt", decay, h_in[..., c], C_c[:, :, :, c]))
    y = y + torch.stack(corr, dim=3)

    y = y.reshape(batch, dim, nchunks * T)[..., :length]
    out = _finish(y, u, D, z, dtype_in)
    if return_last_state:
        return out, carry.reshape(batch, dim, n)
    return out


_BLOCK = 4  # steps per block of selective_scan_parallel: memory and traffic grow with it, levels shrink


def _linear_scan(log_a: Tensor, b: Tensor) -> Tensor:
    """h[t] = exp(log_a[t]) * h[t-1] + b[t] along the last axis, h[-1] = 0; log_a <= 0 (broadcasts to b).

    Blocks of _BLOCK steps: h = (lower-triangular exp(cum[t] - cum[k])) @ b within a block, plus the state
    entering the block decayed by exp(cum[t]); the entering states come from the same scan over the
    blocks' (total decay, end state) pairs. Exponents are differences of cumulative sums inside one block,
    never a whole-sequence sum, so nothing overflows.
    """
    log_a = log_a.expand_as(b)
    length, T = b.shape[-1], _BLOCK
    if length == 1:
        return b
    nblocks = -(-length // T)
    pad = nblocks * T - length
    if pad:
        log_a, b = F.pad(log_a, (0, pad)), F.pad(b, (0, pad))
    steps = log_a.unflatten(-1, (nblocks, T)).unbind(-1)
    # cumsum over the block's T steps by T - 1 adds: torch.cumsum along a tiny innermost axis was 83% of
    # a GPU training step (benchmarks/bench_train_step.py --profile on an H100)
    cum = torch.stack(list(itertools.accumulate(steps)), -1)  # (..., blocks, T)
    lower = torch.ones(T, T, dtype=torch.bool, device=b.device).tril()
    decay = torch.exp((cum[..., :, None] - cum[..., None, :]).masked_fill(~lower, float("-inf")))  # (..., blocks, T, T)
    h = (decay * b.unflatten(-1, (nblocks, T))[..., None, :]).sum(-1)  # scanned from zero inside each block
    if nblocks > 1:
        ends = _linear_scan(cum[..., -1], h[..., -1])  # state at the end of each block, carried in
        entering = F.pad(ends[..., :-1], (1, 0))
        h = h + torch.exp(cum) * entering[..., None]
    return h.flatten(-2)[..., :length]


def selective_scan_parallel(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                            return_last_state=False):
    """Training path: fully parallel over L (see _linear_scan); memory about 4x a (batch, dim, N, L) tensor."""
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    with torch.autocast(u.device.type, enabled=False):  # fp32 math even inside an autocast region
        return _scan_parallel(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


def _scan_parallel(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    dtype_in = u.dtype
    batch, dim, length = u.shape
    if length == 0:  # the chunked path already handles the empty sequence
        return _scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, None)
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    Bd = _expand_groups(B.float(), dim)  # (batch, dim, N, L), a view
    Cd = _expand_groups(C.float(), dim)
    log_a = delta[:, :, None, :] * A.float()[None, :, :, None]
    h = _linear_scan(log_a, (delta * u.float())[:, :, None, :] * Bd)  # (batch, dim, N, L)
    y = (h * Cd).sum(2)
    out = _finish(y, u, D, z, dtype_in)
    return (out, h[..., -1]) if return_last_state else out


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False):
    """Selective scan with mamba_ssm's semantics; dispatches to the fastest available path.

    Inference uses the CUDA kernel (avssm/csrc/cuda, when built) for CUDA tensors and the compiled CPU
    kernel for CPU tensors; training (autograd) uses the CPU kernel's forward and backward on the CPU and
    the parallel PyTorch path elsewhere; the last state on
    CUDA and anything else use the chunked PyTorch path. Under ``torch.onnx.export`` each call becomes one
    ``SelectiveScan`` node (see selective_scan_onnx.py).
    """
    if torch.onnx.is_in_onnx_export():
        if return_last_state:
            raise ValueError("selective_scan: return_last_state cannot be exported to ONNX")
        return selective_scan_onnx(_value, u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                                   delta_softplus=delta_softplus)
    return _compute(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


def _value(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The scan's output by the normal path (an exported node's value in the trace)."""
    return _compute(u, delta, A, B, C, D, z, delta_bias, delta_softplus, False)


def _compute(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    training = _needs_grad(u, delta, A, B, C, D, z, delta_bias)
    if u.device.type == "cuda" and not return_last_state and not training:
        from avssm.ops import cuda_kernel

        if cuda_kernel.available():
            return cuda_kernel.selective_scan_cuda(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                                                   delta_softplus=delta_softplus)
    if u.device.type == "cpu" and not (training and return_last_state):
        from avssm.ops import cpu_kernel

        if cpu_kernel.available():
            if training:
                return cpu_kernel.selective_scan_cpu_train(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                                                           delta_softplus=delta_softplus)
            return cpu_kernel.selective_scan_cpu(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                                                 delta_softplus=delta_softplus,
                                                 return_last_state=return_last_state)
    if training:
        return selective_scan_parallel(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                                       delta_softplus=delta_softplus, return_last_state=return_last_state)
    return selective_scan_chunked(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                                  delta_softplus=delta_softplus, return_last_state=return_last_state)
