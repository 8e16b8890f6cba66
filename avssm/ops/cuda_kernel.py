"""The CUDA selective scan (avssm/csrc/cuda/selective_scan_kernel.cu) and its fused layouts (fused_scan.cu) for
PyTorch tensors.

The library ``libavssm_kernels.so`` is built by CMake (``avssm build-plugins`` or avssm/csrc/README.md) and
found and bound by avssm.native (torch-free: ``$AVSSM_KERNEL_LIB``, beside ``$AVSSM_PLUGIN_LIB``,
``avssm/lib/``, or ``~/.cache/avssm/native-build/``, where `avssm build-plugins` puts it). Tensors' device pointers and PyTorch's
current stream are passed as they are: no copies beyond making inputs contiguous, no synchronization.
Forward only.
"""
from __future__ import annotations

import ctypes

import torch

from avssm.native import FUSED_LAYOUTS, SCAN_LAYOUTS, FusedScanParams, ScanParams, kernel_library, settings, workspace_size
from avssm.ops.scan_contract import check_shapes

_DTYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


def available() -> bool:
    """True when CUDA is usable and the kernel library loads."""
    if not settings.cuda_kernel_enabled() or not torch.cuda.is_available():
        return False
    return kernel_library() is not None


def selective_scan_cuda(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, workspace=None,
                        lanes_per_channel=0, layout="plan"):
    """Same contract as selective_scan_ref for CUDA tensors; forward only.

    ``workspace``: a uint8 CUDA tensor the call may use as scratch (to reuse one across calls); by default
    one of the size the library asks for is allocated. A smaller one makes the kernel split long sequences
    into fewer segments, never write past it. ``lanes_per_channel``: 0 lets the kernel's plan choose; 1, 2, 4
    or 8 force that channel layout on the N = 16 path (to measure it). ``layout``: "plan", "channel", or
    "tokens" to run the N = 16 token layout (avssm.native.SCAN_LAYOUTS).
    """
    check_shapes(u, delta, A, B, C, D, z, delta_bias)
    lib = kernel_library()
    dtype = u.dtype if u.dtype in _DTYPES else torch.float32
    batch, dim, length = u.shape
    groups, nstate = B.shape[1], A.shape[1]

    def data(t):
        return t.to(dtype).contiguous()

    def fp32(t):
        return None if t is None else t.float().contiguous()

    u_c, delta_c, B_c, C_c = data(u), data(delta), data(B), data(C)
    z_c = None if z is None else data(z)
    A_c, D_c, bias_c = fp32(A), fp32(D), fp32(delta_bias)
    y = torch.empty_like(u_c)
    if workspace is None:
        sms = torch.cuda.get_device_properties(u.device).multi_processor_count
        workspace = torch.empty(max(1, workspace_size(batch, dim, length, nstate, sms, lib)), dtype=torch.uint8,
                                device=u.device)
    elif workspace.dtype != torch.uint8 or workspace.device != u.device or not workspace.is_contiguous():
        raise ValueError(f"selective_scan: workspace must be a contiguous uint8 tensor on {u.device}, "
                         f"got {workspace.dtype} on {workspace.device}")
    ws_bytes = workspace.numel()

    def ptr(t):
        return None if t is None else t.data_ptr()

    params = ScanParams(batch, dim, length, nstate, groups, _DTYPES[dtype], ptr(u_c), ptr(delta_c), ptr(A_c),
                        ptr(B_c), ptr(C_c), ptr(D_c), ptr(z_c), ptr(bias_c), int(bool(delta_softplus)), ptr(y),
                        ptr(workspace), ws_bytes, lanes_per_channel, SCAN_LAYOUTS[layout])
    with torch.cuda.device(u.device):  # the kernel launches on the current device: make it u's
        rc = lib.avssm_selective_scan_fwd(ctypes.byref(params),
                                          ctypes.c_void_p(torch.cuda.current_stream(u.device).cuda_stream))
    if rc != 0:
        raise RuntimeError(f"avssm_selective_scan_fwd failed with CUDA error {rc}")
    return y.to(u.dtype)


def fused_scan_cuda(layout, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """avssm.ops.cross_scan's (``layout="cross-2d"``) or avssm.ops.bidirectional_scan's (``"bidirectional"``)
    contract for CUDA tensors, forward only, through avssm_fused_scan_fwd (the node contract's version 2, as the
    TensorRT plugin runs it); tests/test_gpu.py checks it against the definitions. The models' CUDA path does not
    call it yet: it goes through the copies and selective_scan_cuda, which a GPU has verified."""
    lib = kernel_library()
    dtype = u.dtype if u.dtype in _DTYPES else torch.float32
    cross = layout == "cross-2d"
    batch, nstate = u.shape[0], A.shape[1]
    dim, height, width = (u.shape[1], u.shape[2], u.shape[3]) if cross else (u.shape[1] // 2, 1, u.shape[2])

    def data(t):
        return None if t is None else t.to(dtype).contiguous()

    def fp32(t):
        return None if t is None else t.float().contiguous()

    u_c, delta_c, B_c, C_c, z_c = data(u), data(delta), data(B), data(C), data(z)
    A_c, D_c, bias_c = fp32(A), fp32(D), fp32(delta_bias)
    y = torch.empty((batch, dim, height, width) if cross else (batch, dim, width), dtype=dtype, device=u.device)
    sms = torch.cuda.get_device_properties(u.device).multi_processor_count
    size = lib.avssm_fused_scan_workspace_size(FUSED_LAYOUTS[layout], batch, dim, height * width, nstate,
                                               _DTYPES[dtype], sms)
    workspace = torch.empty(max(1, size), dtype=torch.uint8, device=u.device)

    def ptr(t):
        return None if t is None else t.data_ptr()

    params = FusedScanParams(FUSED_LAYOUTS[layout], batch, dim, nstate, height, width, _DTYPES[dtype], ptr(u_c),
                             ptr(delta_c), ptr(A_c), ptr(B_c), ptr(C_c), ptr(D_c), ptr(z_c), ptr(bias_c),
                             int(bool(delta_softplus)), ptr(y), ptr(workspace), workspace.numel())
    with torch.cuda.device(u.device):
        rc = lib.avssm_fused_scan_fwd(ctypes.byref(params),
                                      ctypes.c_void_p(torch.cuda.current_stream(u.device).cuda_stream))
    if rc != 0:
        raise RuntimeError(f"avssm_fused_scan_fwd ({layout}) failed with CUDA error {rc}")
    return y.to(u.dtype)
