"""Building avssm's native code from avssm/csrc: the C libraries on first use with the system compiler (cpu/: the
CPU scan kernel PyTorch calls; ort/: the SelectiveScan op for ONNX Runtime on the CPU), and the CUDA kernels
and TensorRT plugin with CMake (`avssm build-plugins`)."""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from avssm.errors import AvssmError
from avssm.native import settings
from avssm.native.libraries import load_once

SOURCE_DIR = Path(__file__).resolve().parent.parent / "csrc"
C_DIRS = ("cpu", "ort")  # the C sources compiled on first use (any file in them is part of the cache key)
C_FLAGS = ["-O3", "-ffast-math", "-fopenmp", "-shared", "-fPIC"]


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return platform.machine() + flags


def _arch_flags(compiler: str) -> list[str]:
    # -march=native lets the compiler vectorize expf over the state dimension (AVX2/AVX-512).
    probe = subprocess.run([compiler, "-march=native", "-E", "-x", "c", "-"], input=b"", capture_output=True)
    return ["-march=native"] if probe.returncode == 0 else []


def build_c_library(name: str, sources: list[str]) -> Path:
    """``sources`` (paths under avssm/csrc, e.g. "cpu/selective_scan_cpu.c") compiled into
    ``<cache>/<name>_<key>.so`` with the system C compiler, once: the key covers every file in avssm/csrc/cpu and
    ort, the flags, the compiler and this CPU, so an edited source or another machine builds anew and an unchanged
    one is reused. RuntimeError without a compiler, CalledProcessError when the compiler fails."""
    compiler = settings.c_compiler()
    if compiler is None:
        raise RuntimeError("no C compiler found")
    digest = hashlib.sha256(" ".join(C_FLAGS + sources).encode() + compiler.encode() + _cpu_id().encode())
    for file in sorted(p for d in C_DIRS for p in (SOURCE_DIR / d).glob("*.[ch]")):
        digest.update(file.read_bytes())
    target = settings.cache_dir() / f"{name}_{digest.hexdigest()[:16]}.so"
    if not target.exists():  # the flags follow from compiler and CPU; probing them costs a compiler run
        target.parent.mkdir(parents=True, exist_ok=True)
        includes = [f"-I{SOURCE_DIR / d}" for d in C_DIRS]
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            out = Path(tmp) / target.name
            subprocess.run([compiler, *C_FLAGS, *_arch_flags(compiler), *includes,
                            *(str(SOURCE_DIR / s) for s in sources), "-o", str(out), "-lm"],
                           check=True, capture_output=True)
            os.replace(out, target)  # atomic: concurrent builders never see a partial file
    return target


@load_once
def _ort_scan_op_build() -> Path:
    return build_c_library("ort_selective_scan", ["cpu/selective_scan_cpu.c", "cpu/cross_scan_cpu.c",
                                                  "cpu/bidirectional_scan_cpu.c", "ort/ort_selective_scan.c"])


def ort_scan_op_library() -> Path | None:
    """avssm's SelectiveScan op for ONNX Runtime on the CPU (csrc/ort with the CPU scan kernel), built on first
    use, for ``SessionOptions.register_custom_ops_library``. None where no C compiler is found, it does not
    compile, or ``AVSSM_CPU_KERNEL=0`` turns the compiled CPU kernel off."""
    return _ort_scan_op_build() if settings.cpu_kernel_enabled() else None


# where CMakeLists.txt looks for NvInfer.h under TensorRT_ROOT (its PATH_SUFFIXES)
TENSORRT_INCLUDE_DIRS = ("include", "include/x86_64-linux-gnu", "include/aarch64-linux-gnu")


def tensorrt_headers(root: str | Path) -> Path | None:
    """NvInfer.h under a TensorRT installation, where the CMake build looks for it; None if absent."""
    return next((Path(root) / d / "NvInfer.h" for d in TENSORRT_INCLUDE_DIRS
                 if (Path(root) / d / "NvInfer.h").is_file()), None)


def build_plugins(build_dir: str | Path | None = None, tensorrt_root: str | None = None,
                  architectures: str | None = None, jobs: int | None = None, log=print) -> Path:
    """Configure and build avssm/csrc with CMake (the kernels; the plugin too with TensorRT's headers); returns
    the build directory (default ``<cache>/native-build``, where the libraries are looked for)."""
    if tensorrt_root and tensorrt_headers(tensorrt_root) is None:  # a path the user named: before any work
        raise AvssmError(f"--tensorrt-root {tensorrt_root}: no TensorRT headers there (looked for NvInfer.h in "
                         f"{', '.join(TENSORRT_INCLUDE_DIRS)}); give the folder that holds include/NvInfer.h "
                         "(/usr on JetPack), or leave it out to build the kernels only")
    if not (SOURCE_DIR / "CMakeLists.txt").is_file():
        raise AvssmError(f"native sources not found at {SOURCE_DIR} (reinstall avssm)")
    if shutil.which("cmake") is None:
        raise AvssmError("build-plugins: 'cmake' not found on PATH (apt install cmake, or pip install cmake; "
                         "3.18 or newer)")
    found = settings.nvcc()
    if found is None:
        raise AvssmError("build-plugins: nvcc not found (looked at CUDACXX, CUDA_HOME, CUDA_PATH, PATH and "
                         "/usr/local/cuda/bin): install the CUDA toolkit or set CUDA_HOME")
    nvcc, where = found
    log(f"nvcc: {nvcc} (from {where})")
    build = Path(build_dir) if build_dir else settings.cache_dir() / "native-build"
    configure = ["cmake", "-S", str(SOURCE_DIR), "-B", str(build), f"-DCMAKE_CUDA_COMPILER={nvcc}"]
    if tensorrt_root:
        configure.append(f"-DTensorRT_ROOT={tensorrt_root}")
    if architectures:
        configure.append(f"-DCMAKE_CUDA_ARCHITECTURES={architectures}")
    for cmd in (configure, ["cmake", "--build", str(build), "-j", str(jobs or os.cpu_count() or 2)]):
        log(" ".join(cmd))
        result = subprocess.run(cmd, capture_output=True, text=True)
        for line in result.stdout.splitlines():
            if line.startswith("-- avssm") or "error" in line.lower():
                log(line)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise AvssmError(f"build-plugins: '{' '.join(cmd[:2])}' failed: " + " | ".join(tail))
    return build
