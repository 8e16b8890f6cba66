"""The compiled CPU selective scan (avssm/csrc/cpu/selective_scan_cpu.c), built on first use and called via ctypes.

The C file has no dependency beyond libc and OpenMP, so building it takes about a second with the
system C compiler (avssm.native.build_c_library). The library is cached under ``$AVSSM_CACHE_DIR`` (default
``~/.cache/avssm``), keyed by the sources, the flags and this CPU. Where no compiler is found, or ``AVSSM_CPU_KERNEL=0``,
:func:`available` is False and the PyTorch path runs instead.

:func:`selective_scan_cpu` is the fused forward for inference; :func:`selective_scan_cpu_train` is the
autograd path (the bare recurrence forward and backward in C, delta's bias/softplus, D and the gate
in PyTorch around it) that `avssm train` uses on the CPU.
"""
from __future__ import annotations

import ctypes

import torch

from avssm.native import build_c_library, settings
from avssm.native.libraries import load_once
from avssm.ops.scan_contract import check_shapes, finish, prepare_delta

@load_once
def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(build_c_library("selective_scan_cpu", ["cpu/selective_scan_cpu.c", "cpu/cross_scan_cpu.c",
                                                                  "cpu/bidirectional_scan_cpu.c"])))
    lib.avssm_scan_cpu_fwd.restype = ctypes.c_int
    lib.avssm_scan_cpu_fwd.argtypes = ([ctypes.c_void_p] * 8 + [ctypes.c_int] + [ctypes.c_void_p] * 2
                                       + [ctypes.c_int64] * 5 + [ctypes.c_int])
    lib.avssm_cross_scan_cpu_fwd.restype = ctypes.c_int
    lib.avssm_cross_scan_cpu_fwd.argtypes = ([ctypes.c_void_p] * 7 + [ctypes.c_int, ctypes.c_void_p]
                                             + [ctypes.c_int64] * 5 + [ctypes.c_int])
    lib.avssm_bidir_scan_cpu_fwd.restype = ctypes.c_int
    lib.avssm_bidir_scan_cpu_fwd.argtypes = ([ctypes.c_void_p] * 8 + [ctypes.c_int, ctypes.c_void_p]
                                             + [ctypes.c_int64] * 4 + [ctypes.c_int])
    lib.avssm_scan_cpu_bwd.restype = ctypes.c_int
    lib.avssm_scan_cpu_bwd.argtypes = [ctypes.c_void_p] * 11 + [ctypes.c_int64] * 5 + [ctypes.c_int]
    return lib


def available() -> bool:
    if not settings.cpu_kernel_enabled():
        return False
    return _library() is not None


def selective_scan_cpu(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """Same contract as selective_scan_ref, for CPU tensors, forward only; one pass, all fused."""
    check_shapes(u, delta, A, B, C, D, z, delta_bias)
    lib = _library()
    batch, dim, length = u.shape
    groups, nstate = B.shape[1], A.shape[1]

    def f32(t):
        return None if t is None else t.float().contiguous()

    def ptr(t):
        return None if t is None else t.data_ptr()

    u_f, delta_f, z_f, A_f, D_f, bias_f = (f32(t) for t in (u, delta, z, A, D, delta_bias))
    Bt = B.float().transpose(2, 3).contiguous()  # (batch, groups, L, N)
    Ct = C.float().transpose(2, 3).contiguous()
    y = torch.empty((batch, dim, length), dtype=torch.float32)
    last = torch.empty((batch, dim, nstate), dtype=torch.float32)
    rc = lib.avssm_scan_cpu_fwd(ptr(u_f), ptr(delta_f), ptr(A_f), ptr(Bt), ptr(Ct), ptr(D_f), ptr(z_f), ptr(bias_f),
                                int(bool(delta_softplus)), ptr(y), ptr(last), batch, dim, groups, length, nstate,
                                torch.get_num_threads())
    if rc != 0:
        raise ValueError(f"selective_scan: CPU kernel rejected N={nstate} (max 256) or groups={groups}")
    out = y.to(u.dtype)
    return (out, last) if return_last_state else out


def cross_selective_scan_cpu(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False):
    """avssm.ops.cross_scan's contract for CPU tensors, forward only: the four directions walked by index in the
    map (cross_scan_cpu.c), no traversal copies; y (batch, dim, H, W) fp32 cast to u's dtype."""
    lib = _library()
    batch, dim, height, width = u.shape
    nstate = A.shape[1]

    def f32(t):
        return None if t is None else t.float().contiguous()

    def ptr(t):
        return None if t is None else t.data_ptr()

    tensors = [f32(t) for t in (u, delta, A, B, C, D, delta_bias)]
    y = torch.empty((batch, dim, height, width), dtype=torch.float32)
    rc = lib.avssm_cross_scan_cpu_fwd(*(ptr(t) for t in tensors), int(bool(delta_softplus)), ptr(y), batch, dim,
                                      height, width, nstate, torch.get_num_threads())
    if rc == 1:
        raise ValueError(f"cross_selective_scan: CPU kernel rejected N={nstate} (max 256)")
    if rc == 2:
        raise MemoryError("cross_selective_scan: no memory for a row's sums")
    return y.to(u.dtype)


def bidirectional_selective_scan_cpu(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """avssm.ops.bidirectional_scan's contract for CPU tensors, forward only: direction 1 walked backwards by
    index (bidirectional_scan_cpu.c), no flipped copies; y (batch, dim, L) fp32 cast to u's dtype."""
    lib = _library()
    batch, dim2, length = u.shape
    nstate = A.shape[1]

    def f32(t):
        return None if t is None else t.float().contiguous()

    def ptr(t):
        return None if t is None else t.data_ptr()

    u_f, delta_f, A_f, D_f, z_f, bias_f = (f32(t) for t in (u, delta, A, D, z, delta_bias))
    Bt = B.float().transpose(2, 3).contiguous()  # (batch, 2, L, N)
    Ct = C.float().transpose(2, 3).contiguous()
    y = torch.empty((batch, dim2 // 2, length), dtype=torch.float32)
    rc = lib.avssm_bidir_scan_cpu_fwd(ptr(u_f), ptr(delta_f), ptr(A_f), ptr(Bt), ptr(Ct), ptr(D_f), ptr(z_f),
                                      ptr(bias_f), int(bool(delta_softplus)), ptr(y), batch, dim2 // 2, length, nstate,
                                      torch.get_num_threads())
    if rc == 1:
        raise ValueError(f"bidirectional_selective_scan: CPU kernel rejected N={nstate} (max 256)")
    if rc == 2:
        raise MemoryError("bidirectional_selective_scan: no memory for a row's backward output")
    return y.to(u.dtype)


class _BareScan(torch.autograd.Function):
    """y = the recurrence alone (no bias, softplus, D or gate); fp32 contiguous inputs, B/C (batch, groups, N, L)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C):
        ctx.save_for_backward(u, delta, A, B, C)
        return selective_scan_cpu(u, delta, A, B, C)

    @staticmethod
    def backward(ctx, dy):
        u, delta, A, B, C = ctx.saved_tensors
        lib = _library()
        batch, dim, length = u.shape
        groups, nstate = B.shape[1], A.shape[1]
        Bt, Ct = B.transpose(2, 3).contiguous(), C.transpose(2, 3).contiguous()  # (batch, groups, L, N)
        dy = dy.float().contiguous()
        du, ddelta = torch.empty_like(u), torch.empty_like(u)
        dA_rows = torch.empty((batch, dim, nstate), dtype=torch.float32)
        dB_rows = torch.empty((batch, dim, length, nstate), dtype=torch.float32)
        dC_rows = torch.empty_like(dB_rows)
        rc = lib.avssm_scan_cpu_bwd(u.data_ptr(), delta.data_ptr(), A.data_ptr(), Bt.data_ptr(), Ct.data_ptr(),
                                    dy.data_ptr(), du.data_ptr(), ddelta.data_ptr(), dA_rows.data_ptr(),
                                    dB_rows.data_ptr(), dC_rows.data_ptr(), batch, dim, groups, length, nstate,
                                    torch.get_num_threads())
        if rc != 0:
            raise RuntimeError(f"selective_scan: CPU backward failed (code {rc}: 1 bad shape, 2 out of memory)")

        def per_group(rows):  # (batch, dim, L, N) -> (batch, groups, N, L): channels of a group share B and C
            return rows.view(batch, groups, dim // groups, length, nstate).sum(2).transpose(2, 3)

        return du, ddelta, dA_rows.sum(0), per_group(dB_rows), per_group(dC_rows)


def selective_scan_cpu_train(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Same contract as selective_scan_ref (no last state), for CPU tensors, with autograd."""
    check_shapes(u, delta, A, B, C, D, z, delta_bias)
    with torch.autocast("cpu", enabled=False):
        delta_f = prepare_delta(delta, delta_bias, delta_softplus).contiguous()
        y = _BareScan.apply(u.float().contiguous(), delta_f, A.float().contiguous(), B.float().contiguous(),
                            C.float().contiguous())
        return finish(y, u, D, z, u.dtype)


__all__ = ["available", "selective_scan_cpu", "selective_scan_cpu_train"]
