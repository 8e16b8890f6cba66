"""`avssm calib`'s options and their defaults, in a light module (the CLI reads them at start)."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_OP_TYPES = ("Conv", "MatMul", "Gemm")
DEFAULT_KEEP = (
    r"^scan\d+/",                              # the SelectiveScan lowering (portable form)
    r"(x_proj|dt_proj)",                       # delta, B and C feed softplus/exp inside the scan
    r"/head/(cls_logits|box_pred|centerness)",  # the head's final decode
)
METHODS = ("entropy", "minmax", "percentile")


@dataclass(frozen=True)
class CalibOptions:
    frames: int = 256          # calibration frames to read
    holdout: int = 16          # further frames, never calibrated on, for the fidelity report
    min_frames: int = 8        # fail when fewer calibration frames can be read
    method: str = "entropy"    # one of METHODS
