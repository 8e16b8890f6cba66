"""Frame preprocessing shared by every backend (numpy only)."""
from __future__ import annotations

import numpy as np

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


def normalize_frame(frame_bgr: np.ndarray, mean=IMAGENET_MEAN_RGB, std=IMAGENET_STD_RGB) -> np.ndarray:
    """uint8 BGR (H, W, 3) camera frame -> float32 (1, 3, H, W) normalized RGB tensor.

    Padding to the model's stride happens inside the model, so boxes come back in frame pixels.
    """
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"frame: expected (H, W, 3) BGR, got shape {frame_bgr.shape}")
    rgb = frame_bgr[:, :, ::-1].astype(np.float32) * (1.0 / 255.0)
    rgb = (rgb - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])


def synthetic_road_frame(height: int = 1080, width: int = 1920, seed: int = 0) -> np.ndarray:
    """A deterministic stand-in camera frame (sky, road, lane lines, boxes) as uint8 BGR."""
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), np.uint8)
    horizon = height * 2 // 5
    img[:horizon] = (200, 160, 120)  # sky (BGR)
    img[horizon:] = (90, 90, 90)  # road
    for i in range(1, 4):  # lane lines converging to the vanishing point
        x_top = width // 2 + (i - 2) * width // 40
        x_bot = width // 2 + (i - 2) * width // 3
        for y in range(horizon, height, 4):
            t = (y - horizon) / (height - horizon)
            x = int(x_top + (x_bot - x_top) * t)
            img[y:y + 2, max(0, x - 3):x + 3] = 230
    for _ in range(12):  # vehicles, sizes growing towards the camera
        y = int(rng.uniform(horizon + 1, height))
        s = max(2, int((y - horizon) / (height - horizon) * height / 4))
        x = int(rng.uniform(0, max(1, width - s)))
        img[y - s // 2:y, x:x + s] = rng.integers(0, 255, 3, dtype=np.uint8)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)
