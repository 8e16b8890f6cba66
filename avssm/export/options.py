"""`avssm export`'s options and their defaults, in a light module (the CLI reads them at start)."""
from __future__ import annotations

from dataclasses import dataclass

SCAN_OPS = ("plugin", "portable")
PRECISIONS = ("fp32", "fp16")
MIN_OPSET = 17


@dataclass(frozen=True)
class ExportOptions:
    input_size: tuple[int, int] = (1080, 1920)  # (H, W) of the example input (the optimal size with dynamic)
    dynamic: bool = False                       # symbolic batch, height and width
    batch: int = 1
    scan_op: str = "plugin"                     # one of SCAN_OPS
    fused: bool = True                          # VMamba's and Vim's scans as fused nodes (else copies + plain node)
    precision: str = "fp32"                     # one of PRECISIONS
    opset: int = MIN_OPSET
