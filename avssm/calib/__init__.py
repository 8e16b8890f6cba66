"""Calibration and precision (INT8 explicit Q/DQ) for exported models. Imports without PyTorch.

    from avssm.calib import calibrate
    report = calibrate("det.onnx", "clip.mp4", "det.int8.onnx", frames=256, method="entropy")
"""
from avssm.calib.calibrate import calibrate
from avssm.calib.frames import fidelity, read_frames
from avssm.calib.quantize import DEFAULT_KEEP, DEFAULT_OP_TYPES, CalibrationError, qdq_placement, quantize_int8

__all__ = ["DEFAULT_KEEP", "DEFAULT_OP_TYPES", "CalibrationError", "calibrate", "fidelity", "qdq_placement",
           "quantize_int8", "read_frames"]
