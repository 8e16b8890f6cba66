"""The CUDA selective scan (plugins/selective_scan/selective_scan_kernel.cu) called through its C API.

The library ``libavssm_kernels.so`` is built by CMake (``avssm build-plugins`` or plugins/README.md)
and found, in order, at ``$AVSSM_KERNEL_LIB``, beside ``$AVSSM_PLUGIN_LIB``, in ``avssm/lib/``, or in
``plugins/build/`` of a source checkout. Tensors' device pointers and PyTorch's current stream are
passed as they are: no copies beyond making inputs contiguous, no synchronization. Forward only.
"""
from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

import torch

LIB_NAME = "libavssm_kernels.so"
_DTYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_lock = threading.Lock()
_lib = None
_searched = False


class ScanParams(ctypes.Structure):
    """Mirror of avssm_scan_params in plugins/include/avssm/selective_scan.h."""

    _fields_ = [
        ("batch", ctypes.c_int64), ("dim", ctypes.c_int64), ("length", ctypes.c_int64),
        ("dstate", ctypes.c_int64), ("groups", ctypes.c_int64), ("input_type", ctypes.c_int),
        ("u", ctypes.c_void_p), ("delta", ctypes.c_void_p), ("A", ctypes.c_void_p), ("B", ctypes.c_void_p),
        ("C", ctypes.c_void_p), ("D", ctypes.c_void_p), ("z", ctypes.c_void_p), ("delta_bias", ctypes.c_void_p),
        ("delta_softplus", ctypes.c_int), ("y", ctypes.c_void_p), ("workspace", ctypes.c_void_p),
        ("workspace_bytes", ctypes.c_size_t),
    ]


def candidate_paths() -> list[Path]:
    paths = []
    if os.environ.get("AVSSM_KERNEL_LIB"):
        paths.append(Path(os.environ["AVSSM_KERNEL_LIB"]))
    if os.environ.get("AVSSM_PLUGIN_LIB"):
        paths.append(Path(os.environ["AVSSM_PLUGIN_LIB"]).with_name(LIB_NAME))
    package = Path(__file__).resolve().parent.parent
    paths.append(package / "lib" / LIB_NAME)
    paths.append(package.parent / "plugins" / "build" / LIB_NAME)
    return paths


def find_library() -> Path | None:
    return next((p for p in candidate_paths() if p.is_file()), None)


def _load():
    global _lib, _searched
    with _lock:
        if _searched:
            return _lib
        _searched = True
        path = find_library()
        if path is None:
            return None
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            return None
        lib.avssm_selective_scan_fwd.restype = ctypes.c_int
        lib.avssm_selective_scan_fwd.argtypes = [ctypes.POINTER(ScanParams), ctypes.c_void_p]
        lib.avssm_selective_scan_workspace_size.restype = ctypes.c_size_t
        lib.avssm_selective_scan_workspace_size.argtypes = [ctypes.c_int64] * 4 + [ctypes.c_int]
        _lib = lib
        return _lib


def available() -> bool:
    """True when CUDA is usable and the kernel library loads."""
    if os.environ.get("AVSSM_CUDA_KERNEL", "1") == "0" or not torch.cuda.is_available():
        return False
    return _load() is not None


def selective_scan_cuda(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Same contract as selective_scan_ref for CUDA tensors; forward only."""
    from avssm.ops.selective_scan import _check_shapes

    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    lib = _load()
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
    sms = torch.cuda.get_device_properties(u.device).multi_processor_count
    ws_bytes = lib.avssm_selective_scan_workspace_size(batch, dim, length, nstate, sms)
    workspace = torch.empty(max(1, ws_bytes), dtype=torch.uint8, device=u.device)

    def ptr(t):
        return None if t is None else t.data_ptr()

    params = ScanParams(batch, dim, length, nstate, groups, _DTYPES[dtype], ptr(u_c), ptr(delta_c), ptr(A_c),
                        ptr(B_c), ptr(C_c), ptr(D_c), ptr(z_c), ptr(bias_c), int(bool(delta_softplus)), ptr(y),
                        ptr(workspace), ws_bytes)
    with torch.cuda.device(u.device):  # the kernel launches on the current device: make it u's
        rc = lib.avssm_selective_scan_fwd(ctypes.byref(params),
                                          ctypes.c_void_p(torch.cuda.current_stream(u.device).cuda_stream))
    if rc != 0:
        raise RuntimeError(f"avssm_selective_scan_fwd failed with CUDA error {rc}")
    return y.to(u.dtype)
