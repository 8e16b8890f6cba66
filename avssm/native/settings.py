"""Every environment variable avssm reads, in one place.

| variable | effect |
|---|---|
| ``AVSSM_CACHE_DIR`` | where built libraries, native builds and the default model go (default ``~/.cache/avssm``) |
| ``AVSSM_PLUGIN_LIB`` | the TensorRT plugin library to use (the kernel library is looked for beside it too) |
| ``AVSSM_KERNEL_LIB`` | the CUDA kernel library to use |
| ``AVSSM_CPU_KERNEL=0`` | turn off the compiled CPU scan kernel and the ONNX Runtime CPU op |
| ``AVSSM_CUDA_KERNEL=0`` | turn off the CUDA scan kernel for PyTorch tensors |
| ``CC`` | the C compiler for the CPU kernel and the ONNX Runtime op (default ``cc``, then ``gcc``) |
| ``CUDACXX``, ``CUDA_HOME``, ``CUDA_PATH`` | where `avssm build-plugins` finds nvcc (then ``PATH``, then ``/usr/local/cuda/bin``, where JetPack puts it) |
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("AVSSM_CACHE_DIR", Path.home() / ".cache" / "avssm"))


def plugin_lib() -> Path | None:
    value = os.environ.get("AVSSM_PLUGIN_LIB")
    return Path(value) if value else None


def kernel_lib() -> Path | None:
    value = os.environ.get("AVSSM_KERNEL_LIB")
    return Path(value) if value else None


def cpu_kernel_enabled() -> bool:
    return os.environ.get("AVSSM_CPU_KERNEL", "1") != "0"


def cuda_kernel_enabled() -> bool:
    return os.environ.get("AVSSM_CUDA_KERNEL", "1") != "0"


def c_compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def nvcc() -> tuple[str, str] | None:
    """(nvcc's path, where it was found): ``CUDACXX``, ``CUDA_HOME``, ``CUDA_PATH``, ``PATH``, then
    ``/usr/local/cuda/bin`` (JetPack installs it there without putting it on PATH)."""
    candidates = [("CUDACXX", os.environ.get("CUDACXX"))]
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(variable):
            candidates.append((variable, str(Path(os.environ[variable]) / "bin" / "nvcc")))
    candidates += [("PATH", shutil.which("nvcc")), ("/usr/local/cuda/bin", "/usr/local/cuda/bin/nvcc")]
    for where, path in candidates:
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path, where
    return None
