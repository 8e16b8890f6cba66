"""`avssm doctor`: what this machine has for avssm (PyTorch/CUDA/GPU, TensorRT, ONNX Runtime, the native
libraries). An application module: it looks at every layer, so nothing below imports it."""
from __future__ import annotations

import re
from importlib import metadata

from avssm import native
from avssm.runtime.backends import ORT_TENSORRT_V3_PLUGINS, ort_tensorrt_runs_v3_plugins


def _major(version: str | None) -> int | None:
    match = re.match(r"(\d+)", version or "")
    return int(match.group(1)) if match else None


def _distribution(*names: str) -> tuple[str, str] | None:
    for name in names:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _driver_cuda() -> str | None:
    """The CUDA version the installed driver supports, through cuda-python ("12.6"), or None."""
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        err, version = cudart.cudaDriverGetVersion()
        return f"{version // 1000}.{version % 1000 // 10}" if int(err) == 0 and version else None
    except Exception:  # noqa: BLE001 - no cuda-python, no driver, no GPU: nothing to compare
        return None


def gpu_stack() -> dict:
    """Versions of the GPU packages and what the driver supports (None where absent)."""
    trt_libs = _distribution("tensorrt-cu13-libs", "tensorrt-cu12-libs", "tensorrt-cu11-libs")
    ort = _distribution("onnxruntime-gpu")
    return {"driver_cuda": _driver_cuda(),
            "cuda_python": (_distribution("cuda-python") or (None, None))[1],
            "tensorrt": (_distribution("tensorrt") or (None, None))[1],
            "tensorrt_cuda": re.search(r"cu(\d+)", trt_libs[0]).group(1) if trt_libs else None,
            "onnxruntime_gpu": ort[1] if ort else None}


def compatibility_problems(stack: dict) -> list[str]:
    """One line per GPU package that does not fit the driver or the other packages (see gpu_stack)."""
    problems = []
    driver = _major(stack.get("driver_cuda"))
    for name, major in (("cuda-python", _major(stack.get("cuda_python"))),
                        ("tensorrt", _major(stack.get("tensorrt_cuda")))):
        if driver is not None and major is not None and major > driver:
            problems.append(f"{name} is built for CUDA {major}, but the driver supports CUDA {stack['driver_cuda']}: "
                            f"install the CUDA {driver} build (pip install 'cuda-python<{driver + 1}', "
                            f"tensorrt-cu{driver}) or update the driver")
    python_major, trt_major = _major(stack.get("cuda_python")), _major(stack.get("tensorrt_cuda"))
    if python_major is not None and trt_major is not None and python_major != trt_major:
        problems.append(f"cuda-python {stack['cuda_python']} (CUDA {python_major}) and TensorRT for CUDA {trt_major} "
                        f"do not match: pip install 'cuda-python>={trt_major},<{trt_major + 1}'")
    if _major(stack.get("tensorrt")) is not None and _major(stack["tensorrt"]) < 10:
        problems.append(f"TensorRT {stack['tensorrt']} has no IPluginV3: avssm's plugin needs TensorRT 10.0 or newer; "
                        "use portable-form files (avssm export --scan-op portable)")
    ort = stack.get("onnxruntime_gpu")
    if ort and not ort_tensorrt_runs_v3_plugins(ort):
        problems.append(f"onnxruntime-gpu {ort}: its TensorRT provider takes only V1 plugins, so plugin-form files run "
                        f"their scans as standard ops there (ONNX Runtime {'.'.join(map(str, ORT_TENSORRT_V3_PLUGINS))} "
                        "and newer run avssm's plugin)")
    return problems


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
    report["gpu_stack"] = gpu_stack()
    report["compatibility"] = compatibility_problems(report["gpu_stack"])
    kernels = native.find_kernel_library()
    report["kernel_library"] = {"path": str(kernels) if kernels else None,
                                "loadable": native.kernel_library_loads(kernels) if kernels else False,
                                "looked_in": [str(p) for p in native.kernel_candidates()]}
    plugin = native.find_plugin_library()
    looked = ", ".join(str(p) for p in native.plugin_candidates())
    problem = native.check_plugin_library(plugin) if plugin else \
        f"not found (looked at {looked}): avssm build-plugins, or set AVSSM_PLUGIN_LIB to a library built elsewhere"
    autoregister = plugin.with_name(native.AUTOREGISTER_LIB) if plugin else None
    report["trt_plugin_library"] = {"path": str(plugin) if plugin else None, "ok": problem is None, "problem": problem,
                                    "autoregister": str(autoregister) if autoregister and autoregister.is_file()
                                    else None}
    ort_op = native.ort_scan_op_library() if report["onnxruntime"] is not None else None
    report["onnxruntime_scan_op"] = str(ort_op) if ort_op else None
    if report["torch"] is not None:  # the CPU kernel serves PyTorch's scan
        from avssm.ops import cpu_kernel

        report["cpu_scan_kernel"] = cpu_kernel.available()
    else:
        report["cpu_scan_kernel"] = None
    return report
