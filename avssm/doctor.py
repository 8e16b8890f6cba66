"""`avssm doctor`: what this machine has for avssm (PyTorch/CUDA/GPU, TensorRT, ONNX Runtime, the native
libraries). An application module: it looks at every layer, so nothing below imports it."""
from __future__ import annotations

from avssm import native


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
    kernels = native.find_kernel_library()
    report["kernel_library"] = {"path": str(kernels) if kernels else None,
                                "loadable": native.kernel_library_loads(kernels) if kernels else False}
    plugin = native.find_plugin_library()
    problem = native.check_plugin_library(plugin) if plugin else "not found (avssm build-plugins, or set AVSSM_PLUGIN_LIB)"
    report["trt_plugin_library"] = {"path": str(plugin) if plugin else None, "ok": problem is None, "problem": problem}
    ort_op = native.ort_scan_op_library() if report["onnxruntime"] is not None else None
    report["onnxruntime_scan_op"] = str(ort_op) if ort_op else None
    if report["torch"] is not None:  # the CPU kernel serves PyTorch's scan
        from avssm.ops import cpu_kernel

        report["cpu_scan_kernel"] = cpu_kernel.available()
    else:
        report["cpu_scan_kernel"] = None
    return report
