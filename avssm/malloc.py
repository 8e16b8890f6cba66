"""glibc malloc settings for a process that runs a large PyTorch model on the CPU frame after frame.

PyTorch's CPU allocator takes every tensor from malloc. glibc serves blocks above its mmap threshold (which
it adapts up to 32 MiB) with fresh mmaps and unmaps them on free, so every forward pass at camera resolution
page-faults all of its large activations in again. With the thresholds raised, freed blocks stay in the heap
and the next frame reuses them: no faults after the first frames, for a peak RSS somewhat higher, since the
heap keeps its largest footprint (the measurements are in docs/notes/history.md).

Torch-free; does nothing where the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_applied = False


def keep_freed_memory() -> bool:
    """Keep freed blocks of up to 1 GiB in the heap for reuse (M_MMAP_THRESHOLD 1 GiB, M_TRIM_THRESHOLD 2 GiB).
    Process-wide, for the rest of the process; True where it took effect (glibc)."""
    global _applied
    if not _applied:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to set
            return False
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        _applied = bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
    return _applied
