"""The C API of libavssm_kernels.so (avssm/csrc/include/avssm/selective_scan.h) as ctypes: the params struct,
its version, and the calls that need no GPU (workspace size, the plan)."""
from __future__ import annotations

import ctypes

from avssm.errors import AvssmError

SCAN_API_VERSION = 4  # AVSSM_SCAN_API_VERSION of avssm/csrc/include/avssm/selective_scan.h


class ScanParams(ctypes.Structure):
    """Mirror of avssm_scan_params in avssm/csrc/include/avssm/selective_scan.h (SCAN_API_VERSION)."""

    _fields_ = [
        ("batch", ctypes.c_int64), ("dim", ctypes.c_int64), ("length", ctypes.c_int64),
        ("dstate", ctypes.c_int64), ("groups", ctypes.c_int64), ("input_type", ctypes.c_int),
        ("u", ctypes.c_void_p), ("delta", ctypes.c_void_p), ("A", ctypes.c_void_p), ("B", ctypes.c_void_p),
        ("C", ctypes.c_void_p), ("D", ctypes.c_void_p), ("z", ctypes.c_void_p), ("delta_bias", ctypes.c_void_p),
        ("delta_softplus", ctypes.c_int), ("y", ctypes.c_void_p), ("workspace", ctypes.c_void_p),
        ("workspace_bytes", ctypes.c_size_t), ("lanes_per_channel", ctypes.c_int), ("layout", ctypes.c_int),
    ]


class FusedScanParams(ctypes.Structure):
    """Mirror of avssm_fused_scan_params in avssm/csrc/include/avssm/selective_scan.h (SCAN_API_VERSION)."""

    _fields_ = [
        ("layout", ctypes.c_int), ("batch", ctypes.c_int64), ("dim", ctypes.c_int64), ("dstate", ctypes.c_int64),
        ("height", ctypes.c_int64), ("width", ctypes.c_int64), ("input_type", ctypes.c_int),
        ("u", ctypes.c_void_p), ("delta", ctypes.c_void_p), ("A", ctypes.c_void_p), ("B", ctypes.c_void_p),
        ("C", ctypes.c_void_p), ("D", ctypes.c_void_p), ("z", ctypes.c_void_p), ("delta_bias", ctypes.c_void_p),
        ("delta_softplus", ctypes.c_int), ("y", ctypes.c_void_p), ("workspace", ctypes.c_void_p),
        ("workspace_bytes", ctypes.c_size_t),
    ]


# avssm_fused_layout: the node contract's fused layouts (avssm.graph.scan_node's LAYOUT_CROSS_2D, _BIDIRECTIONAL).
FUSED_LAYOUTS = {"cross-2d": 1, "bidirectional": 2}

# avssm_scan_layout: the N = 16 kernel layouts (docs/kernels.md).
SCAN_LAYOUTS = {"plan": 0, "channel": 1, "tokens": 2}


def load_kernel_library(path) -> ctypes.CDLL:
    """Load a libavssm_kernels.so and declare the signatures of its C API. OSError for a build of another
    API version (its avssm_scan_params is laid out differently from ScanParams)."""
    lib = ctypes.CDLL(str(path))
    version = lib.avssm_selective_scan_api_version()
    if version != SCAN_API_VERSION:
        raise OSError(f"{path}: C API version {version}, this avssm needs {SCAN_API_VERSION} (avssm build-plugins)")
    lib.avssm_selective_scan_fwd.restype = ctypes.c_int
    lib.avssm_selective_scan_fwd.argtypes = [ctypes.POINTER(ScanParams), ctypes.c_void_p]
    lib.avssm_selective_scan_workspace_size.restype = ctypes.c_size_t
    lib.avssm_selective_scan_workspace_size.argtypes = [ctypes.c_int64] * 4 + [ctypes.c_int]
    lib.avssm_fused_scan_fwd.restype = ctypes.c_int
    lib.avssm_fused_scan_fwd.argtypes = [ctypes.POINTER(FusedScanParams), ctypes.c_void_p]
    lib.avssm_fused_scan_workspace_size.restype = ctypes.c_size_t
    lib.avssm_fused_scan_workspace_size.argtypes = [ctypes.c_int] + [ctypes.c_int64] * 4 + [ctypes.c_int] * 2
    lib.avssm_selective_scan_plan.restype = ctypes.c_int
    lib.avssm_selective_scan_plan.argtypes = [ctypes.POINTER(ScanParams), ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                              ctypes.POINTER(ctypes.c_int)]
    return lib


def _library_or_error(lib=None):
    if lib is None:
        from avssm.native.libraries import KERNEL_LIB, kernel_library

        lib = kernel_library()
        if lib is None:
            raise AvssmError(f"{KERNEL_LIB} not found or not loadable (avssm build-plugins)")
    return lib


def workspace_size(batch: int, dim: int, length: int, dstate: int, num_multiprocessors: int, lib=None) -> int:
    """Bytes of workspace that let a call of this shape split long sequences on a GPU of that many
    multiprocessors (avssm_selective_scan_workspace_size); ``lib`` as in scan_plan."""
    return _library_or_error(lib).avssm_selective_scan_workspace_size(batch, dim, length, dstate, num_multiprocessors)


def scan_plan(batch: int, dim: int, length: int, dstate: int, groups: int, num_multiprocessors: int,
              workspace_bytes: int, lib=None, lanes_per_channel: int = 0, layout: str = "plan") -> tuple[int, int]:
    """(lanes per channel, segments per sequence) the kernel runs such a call with on a GPU of that many
    multiprocessors, given that much workspace (avssm_selective_scan_plan: host code, no GPU needed).
    ``lib``: a library from load_kernel_library (default: the one found). ``lanes_per_channel``: 0 lets
    the plan choose; 1, 2, 4 or 8 force the N = 16 channel layout (avssm_scan_params.lanes_per_channel).
    ``layout``: a key of SCAN_LAYOUTS ("tokens": one pass, 1 lane, never split)."""
    # Only the pointers' presence matters to the plan: 1 stands for every required tensor.
    params = ScanParams(batch, dim, length, dstate, groups, 0, 1, 1, 1, 1, 1, None, None, None, 0, 1,
                        1 if workspace_bytes else None, workspace_bytes, lanes_per_channel, SCAN_LAYOUTS[layout])
    lanes, segments = ctypes.c_int(), ctypes.c_int()
    plan = _library_or_error(lib).avssm_selective_scan_plan
    if plan(ctypes.byref(params), num_multiprocessors, ctypes.byref(lanes), ctypes.byref(segments)) != 0:
        raise ValueError(f"selective_scan plan: invalid shape batch {batch} dim {dim} L {length} N {dstate} "
                         f"groups {groups} (or lanes_per_channel {lanes_per_channel} with layout {layout})")
    return lanes.value, segments.value
