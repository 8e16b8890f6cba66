"""Finding and loading the built libraries: the CUDA kernels (loaded once, for PyTorch) and the TensorRT plugin
(checked for its loader entry points; TensorRT loads it)."""
from __future__ import annotations

import ctypes
import functools
import subprocess
import threading
from pathlib import Path

from avssm.native import settings
from avssm.native.abi import load_kernel_library

PLUGIN_LIB = "libavssm_trt_plugin.so"
# Registers the plugin's creator as it is loaded, for loaders that only dlopen (it needs PLUGIN_LIB beside it).
AUTOREGISTER_LIB = "libavssm_trt_autoregister.so"
KERNEL_LIB = "libavssm_kernels.so"
_PACKAGE = Path(__file__).resolve().parent.parent


def load_once(loader):
    """``loader()`` run once per process, thread-safe, its result kept; None when it fails as a native library
    can (not found, not loadable, an older C API, no compiler, a compile error). The one loader of avssm's
    native libraries: the CUDA kernels, the CPU kernel and the ONNX Runtime op."""
    lock, result = threading.Lock(), []

    @functools.wraps(loader)
    def get():
        with lock:
            if not result:
                try:
                    result.append(loader())
                except (OSError, AttributeError, RuntimeError, subprocess.CalledProcessError):
                    result.append(None)
            return result[0]

    return get


def build_dirs() -> list[Path]:
    """Where `avssm build-plugins` puts libraries by default, and the package's own lib/ (a wheel that ships them)."""
    return [_PACKAGE / "lib", settings.cache_dir() / "native-build"]


def plugin_candidates() -> list[Path]:
    """Where the TensorRT plugin library is looked for, in order."""
    paths = [p for p in [settings.plugin_lib()] if p]
    return paths + [d / PLUGIN_LIB for d in build_dirs()]


def find_plugin_library() -> Path | None:
    return next((p for p in plugin_candidates() if p.is_file()), None)


def check_plugin_library(path: Path) -> str | None:
    """None if ``path`` loads and exports the TensorRT loader entry points, else what is wrong."""
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        return f"cannot be loaded: {e}"
    missing = [name for name in ("getCreators", "getPluginCreators", "setLoggerFinder") if not hasattr(lib, name)]
    return f"not an avssm TensorRT plugin (missing {', '.join(missing)})" if missing else None


def kernel_candidates() -> list[Path]:
    """Where the kernel library is looked for, in order."""
    paths = [p for p in [settings.kernel_lib()] if p]
    if settings.plugin_lib():
        paths.append(settings.plugin_lib().with_name(KERNEL_LIB))
    return paths + [d / KERNEL_LIB for d in build_dirs()]


def find_kernel_library() -> Path | None:
    return next((p for p in kernel_candidates() if p.is_file()), None)


@load_once
def kernel_library() -> ctypes.CDLL | None:
    """The found kernel library, loaded once (None if there is none, or it does not load)."""
    path = find_kernel_library()
    return load_kernel_library(path) if path else None


def kernel_library_loads(path: Path) -> bool:
    """The library loads and has this version's C API (an older build lacks functions or has another version)."""
    try:
        load_kernel_library(path)
        return True
    except (OSError, AttributeError):
        return False
