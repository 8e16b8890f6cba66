"""Inference backends behind one interface: ONNX Runtime, PyTorch, and TensorRT (tensorrt_backend.py).

    backend = load_backend("model.onnx", "auto")
    outputs = backend.infer(images)   # {"boxes": (B, P, 4), "scores": (B, P, C)}

Backends are found by name in a registry (:func:`register_backend`): ONNX Runtime's and TensorRT's are
registered here; the PyTorch backend lives on the torch side (avssm.export.torch_backend) and registers
itself when imported, so this package never imports PyTorch. Every backend carries the model's avssm metadata
(normalization, padding, class names), so pre- and post-processing need no other flags.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from avssm.errors import AvssmError, FaultError
from avssm.graph.onnx_io import load_model, read_onnx_input, session_options

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
    fixed_batch: int | None = 1  # None when the batch is dynamic

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def input_specs(self) -> list[tuple[str, tuple, type]]:
        """(name, shape with None where a dimension is dynamic, numpy dtype) of each of the model's inputs."""
        return [(self.input_name, (self.fixed_batch, 3, *(self.fixed_hw or (None, None))), self.input_dtype)]

    def run_inputs(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs for a value of every input (a model of several inputs; :meth:`infer` feeds the first)."""
        if set(feeds) != {self.input_name}:
            raise BackendError(f"model {self.metadata.get('model')}: takes the input {self.input_name}, "
                               f"was given {', '.join(feeds)}")
        return self.infer(feeds[self.input_name])

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

# ONNX Runtime's TensorRT provider lists plugin creators with getPluginCreatorList() (V1 creators only) before
# 1.22 and with getAllCreators() from 1.22 on; avssm's plugin has only a V3 creator.
ORT_TENSORRT_V3_PLUGINS = (1, 22)


def ort_tensorrt_runs_v3_plugins(version: str) -> bool:
    """Whether this onnxruntime(-gpu) version's TensorRT provider can use avssm's (V3) plugin creator."""
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts) >= ORT_TENSORRT_V3_PLUGINS


def _plugin_form_model(path: Path, provider: str, dtype, options) -> tuple[str | bytes, str]:
    """(model path or bytes, how its scans run) for a plugin-form file (SelectiveScan nodes). TensorRT runs the
    nodes with avssm's plugin (through ONNX Runtime's TensorRT provider from ONNX Runtime 1.22 on); on the CPU
    avssm's SelectiveScan op runs them (fp32 files, where a C compiler built it; registered in ``options``);
    anywhere else they are lowered to standard ops in memory, as `--scan-op portable` would have written them."""
    import onnxruntime as ort

    from avssm import native

    lowered = "standard ops (lowered at load)"
    if provider == "tensorrt":
        if ort_tensorrt_runs_v3_plugins(ort.__version__):
            from avssm.graph.unfuse import has_fused_scans, unfuse_scans

            model = load_model(path)
            if has_fused_scans(model):  # version 1 nodes: the kernel path a GPU has verified (tensorrt_backend)
                return unfuse_scans(model).SerializeToString(), "avssm TensorRT plugin (fused scans unfused at load)"
            return str(path), "avssm TensorRT plugin"
        lowered = (f"standard ops (lowered at load: the TensorRT provider of ONNX Runtime {ort.__version__} takes "
                   "only V1 plugin creators; 1.22 and newer run avssm's plugin)")
    if provider == "cpu" and dtype == np.float32 and (library := native.ort_scan_op_library()) is not None:
        options.register_custom_ops_library(str(library))
        return str(path), "avssm CPU op"
    from avssm.graph.lowering import lower_selective_scan

    return lower_selective_scan(load_model(path)).SerializeToString(), lowered


def ort_tensorrt_plugin_library(plugin_lib: str | None) -> str:
    """The library given to ONNX Runtime's TensorRT provider (``trt_extra_plugin_lib_paths``): the provider only
    dlopens it and then reads TensorRT's registry, so it is the self-registering ``libavssm_trt_autoregister.so``,
    beside ``plugin_lib`` (default: the plugin library found), or ``plugin_lib`` itself when it names that one."""
    from avssm.native import AUTOREGISTER_LIB, find_plugin_library

    base = Path(plugin_lib) if plugin_lib else find_plugin_library()
    if base is None:
        raise BackendError("the plugin-form model needs avssm's TensorRT plugin: run avssm build-plugins "
                           "--tensorrt-root <TensorRT> or pass --plugin-lib")
    library = base if base.name == AUTOREGISTER_LIB else base.with_name(AUTOREGISTER_LIB)
    if not library.is_file():
        raise BackendError(f"plugin library {base}: ONNX Runtime's TensorRT provider needs {AUTOREGISTER_LIB} beside "
                           "it (it registers the plugin as it is loaded); build both with avssm build-plugins")
    return str(library)


class OnnxRuntimeBackend(Backend):
    def __init__(self, path: str | Path, provider: str = "cpu", plugin_lib: str | None = None, reason: str = ""):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise BackendError(f"model {path}: no such file")
        meta, input_name, fixed, dtype = read_onnx_input(path)
        options, model, scan, extra_plugins = session_options(), str(path), "standard ops", ""
        if meta.get("scan_op") == "plugin":
            model, scan = _plugin_form_model(path, provider, dtype, options)
            if provider == "tensorrt" and isinstance(model, str):  # the provider runs the SelectiveScan nodes
                extra_plugins = ort_tensorrt_plugin_library(plugin_lib)
        providers = {"cpu": ["CPUExecutionProvider"],
                     "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                     "tensorrt": [("TensorrtExecutionProvider", {"trt_extra_plugin_lib_paths": extra_plugins}),
                                  "CUDAExecutionProvider", "CPUExecutionProvider"]}[provider]
        try:
            self.session = ort.InferenceSession(model, options, providers=providers)
        except Exception as e:  # noqa: BLE001
            raise BackendError(f"model {path}: ONNX Runtime cannot load it: {str(e).splitlines()[0]}") from None
        name = "onnxruntime" if provider == "cpu" else f"onnxruntime-{provider}"
        super().__init__(name, "cpu" if provider == "cpu" else "cuda", meta, input_name, dtype, fixed, reason,
                         {"onnxruntime": ort.__version__, "providers": self.session.get_providers(),
                          "model_file": str(path), "scan": scan})
        self.output_names = [o.name for o in self.session.get_outputs()]
        first = self.session.get_inputs()[0].shape[0]
        self.fixed_batch = first if isinstance(first, int) and first > 0 else None

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return self.run_inputs({self.input_name: images})

    def input_specs(self) -> list[tuple[str, tuple, type]]:
        return [(i.name, tuple(d if isinstance(d, int) and d > 0 else None for d in i.shape),
                 _ORT_TYPES.get(i.type, np.float32)) for i in self.session.get_inputs()]

    def run_inputs(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            outputs = self.session.run(None, feeds)
        except Exception as e:  # noqa: BLE001 - ONNX Runtime's errors for a frame it cannot run
            message = " ".join(str(e).split())[:300]
            shapes = ", ".join(f"{'x'.join(map(str, v.shape))}" for v in feeds.values())
            raise FaultError(f"model {self.info['model_file']}: ONNX Runtime failed on a {shapes} input: "
                             f"{message}") from None
        return dict(zip(self.output_names, outputs))


_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
              "tensor(bool)": np.bool_}


# ------------------------------------------------------------------------------------------ selection

def _ort_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return ort.get_available_providers()


ENGINE_SUFFIXES = (".engine", ".plan", ".trt")

# name -> factory(model, *, checkpoint, device, plugin_lib, reason) -> Backend
_REGISTRY: dict[str, Callable[..., Backend]] = {}


def register_backend(name: str, factory: Callable[..., Backend]) -> None:
    """Make ``name`` a backend. ``factory(model, checkpoint=, device=, plugin_lib=, reason=)`` opens a model on
    it. The runtime registers ONNX Runtime's and TensorRT's; the torch side registers "torch" when
    avssm.export.torch_backend is imported (the runtime itself never imports PyTorch)."""
    _REGISTRY[name] = factory


def runs_on_pytorch(model: str, backend: str = "auto") -> bool:
    """Whether ``model`` opens on the PyTorch backend: asked for, or, with auto, not an .onnx file or an engine
    (a registered model name)."""
    return backend == "torch" or (backend == "auto" and Path(model).suffix.lower() not in (".onnx", *ENGINE_SUFFIXES))


def _choose(model: str, plugin_lib: str | None) -> tuple[str, str]:
    """(backend, why) for --backend auto."""
    if runs_on_pytorch(model):
        return "torch", "a registered model name runs on PyTorch"
    if Path(model).suffix.lower() in ENGINE_SUFFIXES:
        return "tensorrt", "a TensorRT engine"
    providers = _ort_providers()
    if not providers:
        raise BackendError("no backend available: install onnxruntime (or onnxruntime-gpu)")
    if "TensorrtExecutionProvider" in providers and plugin_lib:
        return "onnxruntime-tensorrt", "TensorRT execution provider available"
    if "CUDAExecutionProvider" in providers:
        return "onnxruntime-cuda", "no TensorRT; ONNX Runtime CUDA provider available"
    return "onnxruntime", "no TensorRT or CUDA provider; ONNX Runtime on the CPU"


def load_backend(model: str, backend: str = "auto", *, checkpoint: str | None = None, device: str = "cpu",
                 plugin_lib: str | None = None) -> Backend:
    """Open ``model`` (an .onnx file, a TensorRT engine, or a registered model name for PyTorch) on ``backend``."""
    if backend not in BACKENDS:
        raise BackendError(f"backend '{backend}': expected one of {', '.join(BACKENDS)}")
    name, reason = _choose(str(model), plugin_lib) if backend == "auto" else (backend, "asked for")
    factory = _REGISTRY.get(name)
    if factory is None:
        raise BackendError(f"model {model}: the {name} backend is not loaded; import avssm.export.torch_backend "
                           "first (avssm's CLI does), or run an exported .onnx file")
    return factory(model, checkpoint=checkpoint, device=device, plugin_lib=plugin_lib, reason=reason)


def _onnxruntime(provider: str):
    def factory(model, *, plugin_lib=None, reason="", **_):
        return OnnxRuntimeBackend(model, provider, plugin_lib if provider == "tensorrt" else None, reason=reason)

    return factory


def _tensorrt(model, *, plugin_lib=None, reason="", **_):
    from avssm.runtime.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(Path(model), plugin_lib, reason=reason)


register_backend("onnxruntime", _onnxruntime("cpu"))
register_backend("onnxruntime-cuda", _onnxruntime("cuda"))
register_backend("onnxruntime-tensorrt", _onnxruntime("tensorrt"))
register_backend("tensorrt", _tensorrt)
