"""Inference backends behind one interface: ONNX Runtime, PyTorch, and TensorRT (tensorrt_backend.py).

    backend = load_backend("model.onnx", "auto")
    outputs = backend.infer(images)   # {"boxes": (B, P, 4), "scores": (B, P, C)}

Only :class:`TorchBackend` imports PyTorch. Every backend carries the model's avssm metadata
(normalization, padding, class names), so pre- and post-processing need no other flags.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avssm.errors import AvssmError
from avssm.malloc import keep_freed_memory
from avssm.runtime.metadata import read_metadata

BACKENDS = ("auto", "onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "torch", "tensorrt")


class BackendError(AvssmError):
    pass


@dataclass
class Backend:
    name: str
    device: str
    metadata: dict
    input_name: str = "images"
    input_dtype: type = np.float32
    fixed_hw: tuple[int, int] | None = None  # None when height and width are dynamic
    reason: str = ""  # why this backend was chosen
    info: dict = field(default_factory=dict)

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def memory(self) -> dict:
        return {}

    def describe(self) -> dict:
        return {"name": self.name, "device": self.device, "reason": self.reason, **self.info}

    def random_weights_warning(self) -> str | None:
        """One line when the model has random weights (no checkpoint): its outputs mean nothing."""
        if self.metadata.get("weights") != "random":
            return None
        return (f"model {self.metadata.get('model')} has random weights (exported or run without --checkpoint): "
                "its detections are meaningless")


# ------------------------------------------------------------------------------------------ ONNX Runtime

def read_onnx_input(path: Path) -> tuple[dict, str, tuple | None, type]:
    """(avssm metadata, input name, fixed (H, W) or None, input numpy dtype) of an exported file."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - any parse failure means the same to the user
        raise BackendError(f"model {path}: not a readable ONNX file ({type(e).__name__})") from None
    meta = read_metadata(model)
    if not meta:
        raise BackendError(f"model {path}: has no avssm metadata (export it with `avssm export`)")
    inp = model.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    hw = tuple(d.dim_value for d in dims[2:4])
    fixed = hw if all(v > 0 for v in hw) and not any(d.dim_param for d in dims[2:4]) else None
    dtype = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type).type
    return meta, inp.name, fixed, dtype


def session_options():
    """Options for every ONNX Runtime session avssm makes: no memory pattern. The pattern allocates a second
    block for a run's intermediates, on the second run of a shape, beside what the arena kept from the first:
    peak RSS nearly doubles (vmamba_nano_det 1920x1080: 3307 -> 1778 MiB exported static, 1476 -> 822 MiB
    dynamic) and the frame after a one-frame warm-up pays ~1 s of page faults; steady-state time is the same
    without it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_mem_pattern = False
    return options


def _plugin_form_model(path: Path, provider: str, dtype, options) -> tuple[str | bytes, str]:
    """(model path or bytes, how its scans run) for a plugin-form file (SelectiveScan nodes). TensorRT runs the
    nodes with avssm's plugin; on the CPU avssm's SelectiveScan op runs them (fp32 files, where a C compiler
    built it; registered in ``options``); anywhere else they are lowered to standard ops in memory, as
    `--scan-op portable` would have written them."""
    from avssm import native

    if provider == "tensorrt":
        return str(path), "avssm TensorRT plugin"
    if provider == "cpu" and dtype == np.float32 and (library := native.ort_scan_op_library()) is not None:
        options.register_custom_ops_library(str(library))
        return str(path), "avssm CPU op"
    import onnx

    from avssm.export.portable import lower_selective_scan

    return lower_selective_scan(onnx.load(str(path))).SerializeToString(), "standard ops (lowered at load)"


class OnnxRuntimeBackend(Backend):
    def __init__(self, path: str | Path, provider: str = "cpu", plugin_lib: str | None = None, reason: str = ""):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise BackendError(f"model {path}: no such file")
        meta, input_name, fixed, dtype = read_onnx_input(path)
        providers = {"cpu": ["CPUExecutionProvider"],
                     "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                     "tensorrt": [("TensorrtExecutionProvider", {"trt_extra_plugin_lib_paths": plugin_lib or ""}),
                                  "CUDAExecutionProvider", "CPUExecutionProvider"]}[provider]
        options, model, scan = session_options(), str(path), "standard ops"
        if meta.get("scan_op") == "plugin":
            model, scan = _plugin_form_model(path, provider, dtype, options)
        try:
            self.session = ort.InferenceSession(model, options, providers=providers)
        except Exception as e:  # noqa: BLE001
            raise BackendError(f"model {path}: ONNX Runtime cannot load it: {str(e).splitlines()[0]}") from None
        name = "onnxruntime" if provider == "cpu" else f"onnxruntime-{provider}"
        super().__init__(name, "cpu" if provider == "cpu" else "cuda", meta, input_name, dtype, fixed, reason,
                         {"onnxruntime": ort.__version__, "providers": self.session.get_providers(),
                          "model_file": str(path), "scan": scan})
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(None, {self.input_name: images})
        return dict(zip(self.output_names, outputs))


# ------------------------------------------------------------------------------------------ PyTorch

class TorchBackend(Backend):
    def __init__(self, model_name: str, checkpoint: str | None = None, device: str = "cpu", reason: str = ""):
        import torch

        from avssm.export.onnx_export import build_metadata
        from avssm.models import create_model

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device {device}: PyTorch sees no CUDA GPU")
        if device == "cpu":
            keep_freed_memory()  # every frame re-faulted its activations in, ~1 s per 1080p frame (avssm/malloc.py)
        self.torch = torch
        self.model = create_model(model_name, checkpoint=checkpoint).eval().to(device)
        if not hasattr(self.model, "class_names"):
            raise BackendError(f"model '{model_name}' is a classifier; `avssm run` needs a detector (*_det)")
        meta = build_metadata(self.model, model_name, (0, 0), "pytorch", "fp32", 0, True,
                              weights=Path(checkpoint).name if checkpoint else "random")
        super().__init__("torch", device, meta, "images", np.float32, None, reason,
                         {"torch": torch.__version__, "model": model_name, "checkpoint": checkpoint})
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            boxes, scores = self.model(torch.from_numpy(images).to(self.device))
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
        return {"boxes": boxes.cpu().numpy(), "scores": scores.cpu().numpy()}

    def memory(self) -> dict:
        if self.device.startswith("cuda"):
            return {"torch_peak_allocated_mib": self.torch.cuda.max_memory_allocated() / 2**20}
        return {}


# ------------------------------------------------------------------------------------------ selection

def _ort_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return ort.get_available_providers()


def load_backend(model: str, backend: str = "auto", *, checkpoint: str | None = None, device: str = "cpu",
                 plugin_lib: str | None = None) -> Backend:
    """Open ``model`` (an .onnx file, a TensorRT engine, or a registered model name for PyTorch)."""
    if backend not in BACKENDS:
        raise BackendError(f"backend '{backend}': expected one of {', '.join(BACKENDS)}")
    path = Path(model)
    is_file = path.suffix.lower() in (".onnx", ".engine", ".plan", ".trt")
    if backend == "torch" or (backend == "auto" and not is_file):
        return TorchBackend(model, checkpoint, device, reason="a registered model name runs on PyTorch")
    if path.suffix.lower() in (".engine", ".plan", ".trt") or backend == "tensorrt":
        from avssm.runtime.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, plugin_lib, reason="a TensorRT engine" if backend == "auto" else "asked for")
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(path, "cpu", reason="asked for")
    if backend == "onnxruntime-cuda":
        return OnnxRuntimeBackend(path, "cuda", reason="asked for")
    if backend == "onnxruntime-tensorrt":
        return OnnxRuntimeBackend(path, "tensorrt", plugin_lib, reason="asked for")
    providers = _ort_providers()
    if not providers:
        raise BackendError("no backend available: install onnxruntime (or onnxruntime-gpu)")
    if "TensorrtExecutionProvider" in providers and plugin_lib:
        return OnnxRuntimeBackend(path, "tensorrt", plugin_lib, reason="TensorRT execution provider available")
    if "CUDAExecutionProvider" in providers:
        return OnnxRuntimeBackend(path, "cuda", reason="no TensorRT; ONNX Runtime CUDA provider available")
    return OnnxRuntimeBackend(path, "cpu", reason="no TensorRT or CUDA provider; ONNX Runtime on the CPU")
