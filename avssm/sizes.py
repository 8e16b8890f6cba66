"""Parsing image sizes given on the command line ("1080x1920")."""
from __future__ import annotations

from avssm.errors import AvssmError


def parse_size(text: str, what: str = "size", order: str = "HxW", minimum: int = 32) -> tuple[int, int]:
    """'1080x1920' -> (1080, 1920), read in ``order`` ("HxW" or "WxH"); a one-line error otherwise."""
    example = "1080x1920" if order == "HxW" else "1920x1080"
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise AvssmError(f"{what} '{text}': expected {order}, e.g. {example}") from None
    if a < minimum or b < minimum:
        raise AvssmError(f"{what} '{text}': both sides must be at least {minimum}")
    return a, b
