"""Every environment variable avssm reads, in one place.

| variable | effect |
|---|---|
| ``AVSSM_CACHE_DIR`` | where built libraries, native builds and the default model go (default ``~/.cache/avssm``) |
| ``AVSSM_PLUGIN_LIB`` | the TensorRT plugin library to use (the kernel library is looked for beside it too) |
| ``AVSSM_KERNEL_LIB`` | the CUDA kernel library to use |
| ``AVSSM_CPU_KERNEL=0`` | turn off the compiled CPU scan kernel and the ONNX Runtime CPU op |
| ``AVSSM_CUDA_KERNEL=0`` | turn off the CUDA scan kernel for PyTorch tensors |
| ``CC`` | the C compiler for the CPU kernel and the ONNX Runtime op (default ``cc``, then ``gcc``) |
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
