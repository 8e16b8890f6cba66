"""Parsing image sizes given on the command line: always HxW ("1080x1920"), as the ONNX input shape reads."""
from __future__ import annotations

from avssm.errors import AvssmError


def parse_size(text: str, flag: str = "size", minimum: int = 32) -> tuple[int, int]:
    """'1080x1920' -> (1080, 1920) (height, width); a one-line error naming ``flag`` otherwise."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise AvssmError(f"{flag} '{text}': expected HxW, e.g. 1080x1920") from None
    if h < minimum or w < minimum:
        raise AvssmError(f"{flag} '{text}': both sides must be at least {minimum}")
    return h, w
