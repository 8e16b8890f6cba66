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
