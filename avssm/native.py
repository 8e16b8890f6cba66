"""Building and finding avssm's native libraries (plugins/): the CUDA kernels and the TensorRT plugin."""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

from avssm.errors import AvssmError

PLUGIN_LIB = "libavssm_trt_plugin.so"
SOURCE_DIR = Path(__file__).resolve().parent.parent / "plugins"


def plugin_candidates() -> list[Path]:
    """Where the TensorRT plugin library is looked for, in order."""
    paths = []
    if os.environ.get("AVSSM_PLUGIN_LIB"):
        paths.append(Path(os.environ["AVSSM_PLUGIN_LIB"]))
    package = Path(__file__).resolve().parent
    paths += [package / "lib" / PLUGIN_LIB, SOURCE_DIR / "build" / PLUGIN_LIB]
    return paths


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


def build_plugins(build_dir: str | Path | None = None, tensorrt_root: str | None = None,
                  architectures: str | None = None, jobs: int | None = None, log=print) -> Path:
    """Configure and build plugins/ with CMake; returns the build directory."""
    if not (SOURCE_DIR / "CMakeLists.txt").is_file():
        raise AvssmError(f"plugins sources not found at {SOURCE_DIR} (build from a source checkout)")
    for tool in ("cmake", "nvcc"):
        if shutil.which(tool) is None:
            raise AvssmError(f"build-plugins: '{tool}' not found on PATH (install CMake and the CUDA toolkit)")
    build = Path(build_dir) if build_dir else SOURCE_DIR / "build"
    configure = ["cmake", "-S", str(SOURCE_DIR), "-B", str(build)]
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


def doctor() -> dict:
    """What this machine has for avssm: PyTorch/CUDA/GPU, TensorRT, ONNX Runtime, the native libraries."""
    report: dict = {}
    try:
        import torch

        report["torch"] = {"version": torch.__version__, "cuda_available": torch.cuda.is_available(),
                           "cuda": torch.version.cuda}
        if torch.cuda.is_available():
            report["torch"]["gpu"] = torch.cuda.get_device_name()
    except ImportError:
        report["torch"] = None
    try:
        import tensorrt

        report["tensorrt"] = tensorrt.__version__
    except ImportError:
        report["tensorrt"] = None
    try:
        import onnxruntime

        report["onnxruntime"] = {"version": onnxruntime.__version__, "providers": onnxruntime.get_available_providers()}
    except ImportError:
        report["onnxruntime"] = None
    from avssm.ops import cpu_kernel
    from avssm.ops.cuda_kernel import find_library

    kernels = find_library()
    report["kernel_library"] = {"path": str(kernels) if kernels else None,
                                "loadable": _loads(kernels) if kernels else False}
    plugin = find_plugin_library()
    problem = check_plugin_library(plugin) if plugin else "not found (avssm build-plugins, or set AVSSM_PLUGIN_LIB)"
    report["trt_plugin_library"] = {"path": str(plugin) if plugin else None, "ok": problem is None, "problem": problem}
    report["cpu_scan_kernel"] = cpu_kernel.available()
    return report


def _loads(path: Path) -> bool:
    try:
        ctypes.CDLL(str(path))
        return True
    except OSError:
        return False
