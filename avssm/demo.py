"""The bundled default job until the runtime lands: one detector forward pass on a full-resolution frame."""
from __future__ import annotations

import time
from pathlib import Path

from avssm.errors import AvssmError


def run_demo(model: str = "vmamba_tiny_det", size: tuple[int, int] = (1080, 1920), checkpoint: str | None = None,
             image: str | None = None, repeats: int = 1, score_threshold: float = 0.3) -> dict:
    """Build ``model``, run it on ``image`` (or a synthetic road frame of ``size``), report latency."""
    import cv2
    import torch

    from avssm.models import create_model
    from avssm.runtime.preprocess import preprocess
    from avssm.runtime.synthetic import synthetic_road_frame

    if image is not None:
        if not Path(image).is_file():
            raise AvssmError(f"image {image}: no such file")
        frame = cv2.imread(image, cv2.IMREAD_COLOR)
        if frame is None:
            raise AvssmError(f"image {image}: not a readable image")
    else:
        frame = synthetic_road_frame(*size)
    net = create_model(model, checkpoint=checkpoint).eval()
    if not hasattr(net, "class_names"):
        raise AvssmError(f"model '{model}' is a classifier; the demo runs a detector (*_det)")
    x = torch.from_numpy(preprocess(frame))
    times = []
    with torch.inference_mode():
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            boxes, scores = net(x)
            times.append(time.perf_counter() - t0)
    best, label = scores[0].max(-1)
    keep = best >= score_threshold
    return {
        "model": model,
        "input": {"height": frame.shape[0], "width": frame.shape[1], "source": image or "synthetic"},
        "params": sum(p.numel() for p in net.parameters()),
        "candidates": int(boxes.shape[1]),
        "above_threshold": int(keep.sum()),
        "max_score": float(best.max()),
        "latency_ms": [round(t * 1000, 1) for t in times],
        "threads": torch.get_num_threads(),
        "weights": checkpoint or "random init (no checkpoint given)",
        "boxes_in_frame": bool((boxes[0, :, 2] <= frame.shape[1]).all() and (boxes[0, :, 3] <= frame.shape[0]).all()),
    }
