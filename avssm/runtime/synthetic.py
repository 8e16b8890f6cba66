"""Deterministic synthetic road frames and clips (numpy + OpenCV): the bundled sample and test data."""
from __future__ import annotations

import cv2
import numpy as np


def synthetic_road_frame(height: int = 1080, width: int = 1920, seed: int = 0, t: int = 0) -> np.ndarray:
    """A stand-in camera frame (sky, road, lane lines, vehicles) as uint8 BGR; ``t`` moves the vehicles."""
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), np.uint8)
    horizon = height * 2 // 5
    img[:horizon] = (200, 160, 120)  # sky (BGR)
    img[horizon:] = (90, 90, 90)  # road
    for i in range(1, 4):  # lane lines converging to the vanishing point
        x_top = width // 2 + (i - 2) * width // 40
        x_bot = width // 2 + (i - 2) * width // 3
        cv2.line(img, (x_top, horizon), (x_bot, height - 1), (230, 230, 230), max(1, width // 400))
    for _ in range(12):  # vehicles drift towards the camera, sizes growing with perspective
        y = horizon + 1 + (int(rng.uniform(0, height - horizon)) + 6 * t) % max(1, height - horizon - 1)
        s = max(2, int((y - horizon) / (height - horizon) * height / 4))
        x = int(rng.uniform(0, max(1, width - s)))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(img, (x, y - s // 2), (x + s, y), color, -1)
    noise = np.random.default_rng(seed * 1000 + t).normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def write_road_clip(path: str, frames: int = 6, height: int = 1080, width: int = 1920, fps: float = 10.0, seed: int = 0) -> None:
    """Write a short synthetic road clip (MPEG-4 part 2, readable by any OpenCV build)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot write video {path}")
    for t in range(frames):
        writer.write(synthetic_road_frame(height, width, seed, t))
    writer.release()
