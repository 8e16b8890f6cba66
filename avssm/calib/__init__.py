"""Calibration and precision (INT8 explicit Q/DQ) for exported models. Imports without PyTorch; names are loaded
on first use, so the CLI's reading of ``avssm.calib.options`` costs nothing.

    from avssm.calib import calibrate
    report = calibrate("det.onnx", "clip.mp4", "det.int8.onnx", frames=256, method="entropy")
"""
import importlib

_EXPORTS = {"calibrate": "calibration", "fidelity": "frames", "read_frames": "frames", "CalibrationError": "quantize",
            "qdq_placement": "quantize", "quantize_int8": "quantize", "DEFAULT_KEEP": "options",
            "DEFAULT_OP_TYPES": "options", "CalibOptions": "options"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"avssm.calib.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'avssm.calib' has no attribute '{name}'")
