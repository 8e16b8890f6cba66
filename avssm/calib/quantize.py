"""INT8 with explicit Q/DQ (what TensorRT 10/11 strongly typed networks take) from real calibration frames.

    from avssm.calib import quantize_int8
    result = quantize_int8("det.onnx", frames, "det.int8.onnx", method="entropy")

ONNX Runtime's static quantizer (QDQ format) chooses the scales: symmetric int8 activations, symmetric
per-channel int8 weights. It cannot load a graph with the unknown SelectiveScan op, so a plugin-form file
is calibrated through its portable twin (the same math in standard ops): each SelectiveScan node is
lowered, the lowered graph quantized with the scan excluded, and each lowering is then replaced by the
original node again. Outside the scans both INT8 files carry the same Q/DQ pairs with the same scales.

What is quantized (overridable): the ops in ``op_types`` (Conv, MatMul, Gemm: the compute) except nodes
whose name, or the name of one of whose weights, matches a pattern in ``keep``: the scan and its lowering,
the projections that produce delta, B and C (their outputs go through softplus and exp), and the head's
final decode layers. Norms, softplus, exp and the rest are never in ``op_types``, so they stay in the
model's precision.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import onnx

from avssm.calib.options import DEFAULT_KEEP, DEFAULT_OP_TYPES, METHODS, CalibOptions  # noqa: F401 - re-exported
from avssm.errors import AvssmError
from avssm.graph.metadata import require_metadata, write_metadata
from avssm.graph.onnx_io import load_model
from avssm.graph.qdq import keeps, qdq_placement, raise_scans  # noqa: F401 - qdq_placement is re-exported
from avssm.graph.scan_node import scan_node_names


class CalibrationError(AvssmError):
    pass


@dataclass
class QuantizeResult:
    output: str
    form: str                      # "plugin" or "portable"
    frames: int
    method: str
    quantized_nodes: list[str] = field(default_factory=list)   # nodes whose inputs got Q/DQ
    kept_nodes: list[str] = field(default_factory=list)        # candidates kept in higher precision
    portable_twin: str | None = None                            # the INT8 portable file (plugin input only)


class _Reader:
    """ONNX Runtime CalibrationDataReader over preprocessed frames (or samples: a value of each input by name),
    served one range at a time.

    ``set_range`` and ``__len__`` let the quantizer collect statistics frame by frame
    (``CalibStridedMinMax``): its histogram calibrators otherwise keep every frame's activations
    in memory until the end, several GB per frame at 1920x1080.
    """

    def __init__(self, input_name: str, frames: list[np.ndarray], progress=None):
        self.input_name, self.frames = input_name, frames
        self.i, self.end = 0, len(frames)
        self.progress = progress  # told "calibration frame i/n" about every tenth of the frames

    def __len__(self):
        return len(self.frames)

    def set_range(self, start_index: int, end_index: int):
        self.i, self.end = start_index, min(end_index, len(self.frames))

    def get_next(self):
        if self.i >= self.end:
            return None
        self.i += 1
        n = len(self.frames)
        if self.progress is not None and (self.i == n or self.i % max(1, n // 10) == 0):
            self.progress(f"calibration frame {self.i}/{n}")
        frame = self.frames[self.i - 1]
        return frame if isinstance(frame, dict) else {self.input_name: frame}

    def rewind(self):
        self.i, self.end = 0, len(self.frames)


def quantize_int8(model_path: str | Path, frames: Iterable[np.ndarray], output: str | Path, *,
                  method: str = CalibOptions.method, op_types: Iterable[str] = DEFAULT_OP_TYPES,
                  keep: Iterable[str] = DEFAULT_KEEP, percentile: float = 99.999, progress=None) -> QuantizeResult:
    """Write an INT8 Q/DQ copy of ``model_path`` (fp32, plugin or portable form) calibrated on ``frames``
    (preprocessed (1, 3, H, W) float32 arrays, from :func:`avssm.calib.frames.read_frames`, or, for a model of
    several inputs, samples: a dict of each input's value, from :func:`avssm.calib.frames.read_samples`)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from avssm.graph.lowering import lower_selective_scan
    from avssm.outputs import atomic_outputs, check_output, faults_as

    if method not in METHODS:
        raise CalibrationError(f"method '{method}': expected one of {', '.join(METHODS)}")
    model_path, output = Path(model_path), Path(output)
    for path, what in ((output, "output"), (portable_twin_path(output), "portable twin")):
        check_output(path, what, inputs={"model": model_path})
    model = load_model(model_path)
    meta = require_metadata(model, source=model_path)
    if meta.get("precision", "fp32") != "fp32":
        raise CalibrationError(f"{model_path}: precision {meta.get('precision')}; calibrate the fp32 export")
    frames = list(frames)
    if not frames:
        raise CalibrationError(f"{model_path}: no calibration frames")
    plugin_form = bool(scan_node_names(model))
    lowered = lower_selective_scan(model) if plugin_form else model
    patterns = [re.compile(p) for p in keep]
    weights = {init.name for init in lowered.graph.initializer}
    kept, to_quantize = [], []
    for node in lowered.graph.node:
        if node.op_type in tuple(op_types):
            (kept if keeps(node, patterns, weights) else to_quantize).append(node.name)
    calibrate = {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
                 "percentile": CalibrationMethod.Percentile}[method]
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp, faults_as("calibration's temporary files in", tmp):
        src = Path(tmp) / "fp32.onnx"
        onnx.save(lowered, str(src))
        portable_int8 = Path(tmp) / "int8.onnx"
        with _calibration_hooks():
            quantize_static(str(src), str(portable_int8), _Reader(input_name, frames, progress), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(op_types), nodes_to_quantize=to_quantize, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=calibrate,
                            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                           "CalibPercentile": percentile,
                                           "CalibStridedMinMax": 1})  # any calibrator: one frame per collection
        quantized = onnx.load(str(portable_int8))
        twin = portable_twin_path(output) if plugin_form else None
        # The file and its portable twin belong together: both are written, or neither is.
        with faults_as("--output", output), atomic_outputs(output, *([twin] if twin else [])) as tmps:
            if twin:
                save_with_metadata(quantized, tmps[1], meta, precision="int8", scan_op="portable",
                                   calibration=method)
                quantized = raise_scans(quantized, model)
            save_with_metadata(quantized, tmps[0], meta, precision="int8",
                               scan_op="plugin" if plugin_form else "portable", calibration=method)
    return QuantizeResult(str(output), "plugin" if plugin_form else "portable", len(frames), method,
                          to_quantize, kept, str(twin) if twin else None)


# True while quantize_int8 calibrates, in its own thread or task only: the two hooks below act on that context
# alone, so ONNX Runtime sessions and log records of other threads are left as they are.
_calibrating: contextvars.ContextVar[bool] = contextvars.ContextVar("avssm_calibrating", default=False)
_hooks_lock = threading.Lock()
_hooks_users = 0
_hooks_original = None


class _QuantizerAdviceFilter(logging.Filter):
    """The quantizer logs advice (pre-processing, bias layout) on the root logger: in avssm's calibration, keep
    errors only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not _calibrating.get()


_advice_filter = _QuantizerAdviceFilter()


@contextlib.contextmanager
def _calibration_hooks():
    """For the calling context: the calibrator's ONNX Runtime session is made without the memory pattern
    (quantize_static has no option for it; avssm.graph.onnx_io.session_options says why avssm's sessions run
    without it), otherwise as ONNX Runtime makes it (no graph optimization); the quantizer's advice is not
    logged and its calibrators' progress not printed. The hooks are installed while any context uses them and act
    only inside one."""
    global _hooks_users, _hooks_original
    import builtins

    import onnxruntime as ort
    from onnxruntime.quantization import calibrate as calibrate_module
    from onnxruntime.quantization.calibrate import CalibraterBase

    from avssm.graph.onnx_io import session_options

    def quiet_print(*args, **kwargs):  # the calibrators print progress on stdout (32 lines for one file)
        if not _calibrating.get():
            builtins.print(*args, **kwargs)

    def create_inference_session(self):
        if not _calibrating.get():
            return _hooks_original(self)
        options = session_options()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.infer_session = ort.InferenceSession(self.augmented_model_path, sess_options=options,
                                                  providers=self.execution_providers)

    with _hooks_lock:
        if _hooks_users == 0:
            _hooks_original = CalibraterBase.create_inference_session
            CalibraterBase.create_inference_session = create_inference_session
            logging.getLogger().addFilter(_advice_filter)
            calibrate_module.print = quiet_print  # its module-level name shadows the builtin for its functions
        _hooks_users += 1
    token = _calibrating.set(True)
    try:
        yield
    finally:
        _calibrating.reset(token)
        with _hooks_lock:
            _hooks_users -= 1
            if _hooks_users == 0:
                CalibraterBase.create_inference_session = _hooks_original
                logging.getLogger().removeFilter(_advice_filter)
                vars(calibrate_module).pop("print", None)


def portable_twin_path(output: Path) -> Path:
    """Where a plugin-form INT8 file's ONNX Runtime twin goes: OUTPUT.portable.onnx."""
    return output.with_name(output.stem + ".portable" + output.suffix)


def save_with_metadata(model: onnx.ModelProto, path: Path, meta: dict, **changes) -> None:
    """Save ``model`` to ``path`` carrying ``meta`` updated with ``changes`` as its avssm metadata."""
    write_metadata(model, meta, **changes)
    onnx.save(model, str(path))
