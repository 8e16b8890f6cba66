"""Decoding images from files and recorded messages, with their size checked before any pixel is decoded.

A 140 KB PNG can declare 12000x12000 pixels and cost gigabytes once decoded; a recorded chunk of a few kilobytes
can inflate to a gigabyte. Every image avssm reads goes through :func:`decode_image_bytes` (files, compressed
image messages) or :func:`check_pixels` (raw image messages), which refuse in one line, naming the image, a frame
of more than ``max_pixels`` (:data:`MAX_IMAGE_PIXELS` unless `--max-image-pixels` raises it) or of no pixel.

    image = decode_image_bytes(Path("frame.png").read_bytes(), "source frame.png")   # uint8 BGR (H, W, 3)
"""
from __future__ import annotations

import io

from avssm.errors import AvssmError

MAX_IMAGE_PIXELS = 64 * 2**20  # 8192 x 8192: an 8K frame (7680 x 4320) fits, twice over


class ImageError(AvssmError):
    pass


def max_record_bytes(max_pixels: int = MAX_IMAGE_PIXELS) -> int:
    """The largest recorded message or decompressed chunk read: room for one raw 4-byte-per-pixel frame of
    ``max_pixels``, and at least 256 MiB."""
    return max(256 << 20, 4 * max_pixels)


def check_pixels(height: int, width: int, what: str, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse a frame with no pixel or with more than ``max_pixels``; ``what`` names it in the message."""
    if height <= 0 or width <= 0:
        raise ImageError(f"{what}: the image is {width}x{height} pixels (width x height): no pixel to run on")
    if height * width > max_pixels:
        raise ImageError(f"{what}: the image is {width}x{height} pixels (width x height), more than the "
                         f"{max_pixels} avssm decodes; pass --max-image-pixels {height * width} if it is real")


def image_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) declared in an encoded image's header (JPEG, PNG, BMP, TIFF, WebP, ...), read without
    decoding it; None when no reader knows the format. Pillow's readers parse the header; Image.open is not
    used, as its own pixel limit (which warns, then refuses without a size) would stand before avssm's."""
    from PIL import Image

    Image.init()
    for name in Image.ID:
        factory, accept = Image.OPEN[name]
        try:
            if accept is not None and not accept(data[:16]):
                continue
            with factory(io.BytesIO(data), "") as image:  # parses the header only
                width, height = image.size
            return height, width
        except Exception:  # noqa: BLE001 - not this format, or a header no reader accepts
            continue
    return None


def decode_image_bytes(data: bytes, what: str, max_pixels: int = MAX_IMAGE_PIXELS):
    """An encoded image as uint8 BGR (H, W, 3), its declared size checked first; ImageError naming ``what``
    when it is not an image, declares too many pixels or none, or does not decode."""
    size = image_size(data)
    if size is None:
        raise ImageError(f"{what}: not a readable image")
    check_pixels(*size, what, max_pixels)
    import cv2  # here, not at import: the command line loads this module and needs neither
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"{what}: not a readable image")
    return image


def read_image_file(path, max_pixels: int = MAX_IMAGE_PIXELS):
    """An image file as uint8 BGR (H, W, 3); ImageError naming the file otherwise."""
    limit = max_record_bytes(max_pixels)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise ImageError(f"source {path}: cannot be read ({e.strerror or e})") from None
    if len(data) > limit:
        raise ImageError(f"source {path}: larger than {limit} bytes, more than an image of "
                         f"{max_pixels} pixels holds; pass --max-image-pixels to raise the limit")
    return decode_image_bytes(data, f"source {path}", max_pixels)
