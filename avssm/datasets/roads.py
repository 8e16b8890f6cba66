"""Procedural road scenes at camera resolution with COCO boxes, deterministic by seed.

A road with perspective (vanishing point, lane markings, sidewalks), sky and background, and the AV
classes of avssm's detectors placed along the perspective: vehicles on the road, pedestrians and
cyclists on the road edges and sidewalks, signs and traffic lights on poles. Sizes follow the
perspective (many small distant objects, down to ~10 px), nearer objects occlude farther ones (boxes
of mostly hidden objects are dropped, the others keep their full extent as COCO does), and lighting,
colour and noise vary per frame.

    frame, boxes = render_scene(seed=3)           # uint8 BGR (1080, 1920, 3), list of Box
    write_dataset("out/", count=200, seed=0)      # out/images/*.jpg + out/annotations.json (COCO)
    write_clip("clip.mp4", frames=30)             # consecutive seeds as a video, for the runtime
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from avssm.datasets.classes import ROAD_CLASSES

CLASSES = ROAD_CLASSES
# Real-world size (width, height) in metres, used with the perspective to size objects in pixels.
_SIZES_M = {"car": (1.8, 1.5), "truck": (2.5, 3.4), "pedestrian": (0.55, 1.75), "cyclist": (0.7, 1.75),
            "traffic_sign": (0.75, 0.75), "traffic_light": (0.4, 1.1)}
MIN_VISIBLE = 0.4  # an object less visible than this is not annotated


@dataclass
class Box:
    x1: float
    y1: float
    x2: float
    y2: float
    label: int  # index into CLASSES

    @property
    def name(self) -> str:
        return CLASSES[self.label]


def _silhouette(name: str, w: int, h: int) -> np.ndarray:
    """The object's silhouette as a (h, w) uint8 mask, bottom-centre at (w/2, h)."""
    sil = np.zeros((h, w), np.uint8)
    x = w // 2
    if name in ("car", "truck"):
        cv2.rectangle(sil, (0, h // 4 if name == "car" else 0), (w - 1, h - 1 - h // 8), 1, -1)
        if name == "car":
            cv2.rectangle(sil, (w // 5, 0), (w - 1 - w // 5, h // 4), 1, -1)
        for wx in (w // 5, w - 1 - w // 5):  # wheels
            cv2.circle(sil, (wx, h - 1 - h // 8), max(1, h // 7), 1, -1)
    elif name == "pedestrian":
        cv2.ellipse(sil, (x, h // 2 + h // 10), (max(1, w // 2), max(1, h * 2 // 5)), 0, 0, 360, 1, -1)
        cv2.circle(sil, (x, h // 10), max(1, h // 10), 1, -1)
    elif name == "cyclist":
        r = max(1, h // 6)
        for wx in (r, w - 1 - r):
            cv2.circle(sil, (wx, h - 1 - r), r, 1, max(1, r // 3))
        cv2.ellipse(sil, (x, h // 3), (max(1, w // 5), max(1, h // 3)), 0, 0, 360, 1, -1)
    elif name == "traffic_sign":
        pole = max(1, w // 10)
        cv2.rectangle(sil, (x - pole, h // 2), (x + pole, h - 1), 1, -1)
        cv2.circle(sil, (x, h // 4), max(1, min(w // 2, h // 4)), 1, -1)
    else:  # traffic_light
        cv2.rectangle(sil, (0, 0), (w - 1, h * 2 // 3), 1, -1)
        cv2.rectangle(sil, (x - max(1, w // 8), h * 2 // 3), (x + max(1, w // 8), h - 1), 1, -1)
    return sil


def _paste(canvas: np.ndarray, owner: np.ndarray, sil: np.ndarray, x1: int, y1: int, color, index: int) -> None:
    """Paint ``sil`` at (x1, y1) into the frame and mark its pixels as owned by object ``index``."""
    h, w = sil.shape
    H, W = owner.shape
    cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(W, x1 + w), min(H, y1 + h)
    if cx2 <= cx1 or cy2 <= cy1:
        return
    on = sil[cy1 - y1:cy2 - y1, cx1 - x1:cx2 - x1].astype(bool)
    canvas[cy1:cy2, cx1:cx2][on] = color
    owner[cy1:cy2, cx1:cx2][on] = index


def render_scene(seed: int, height: int = 1080, width: int = 1920, max_objects: int = 40) -> tuple[np.ndarray, list[Box]]:
    """One frame and its boxes; the same seed gives the same frame."""
    rng = np.random.default_rng(seed)
    horizon = int(height * rng.uniform(0.36, 0.46))
    vx = int(width * rng.uniform(0.42, 0.58))  # vanishing point
    img = np.empty((height, width, 3), np.uint8)
    sky = np.array(rng.uniform([150, 110, 60], [235, 200, 140]))
    for y in range(horizon):  # sky gradient
        img[y] = np.clip(sky * (0.8 + 0.2 * y / max(1, horizon)), 0, 255)
    ground = rng.uniform(70, 120)
    img[horizon:] = (ground * 0.8, ground, ground * 0.8)  # verges
    road_half = width * rng.uniform(0.45, 0.7)
    road = np.array([[vx - 2, horizon], [vx + 2, horizon], [vx + road_half, height], [vx - road_half, height]], np.int32)
    cv2.fillPoly(img, [road], tuple(float(v) for v in rng.uniform(70, 110, 3)))
    for k in (-1, 1):  # sidewalks
        side = np.array([[vx + k * 2, horizon], [vx + k * 4, horizon], [vx + k * road_half * 1.5, height],
                         [vx + k * road_half, height]], np.int32)
        cv2.fillPoly(img, [side], (150, 150, 150))
    for lane in (-1 / 3, 1 / 3):  # dashed lane markings
        for t0 in np.arange(0.02, 1.0, 0.08):
            t1 = t0 + 0.035
            p0 = (int(vx + lane * road_half * t0), int(horizon + (height - horizon) * t0))
            p1 = (int(vx + lane * road_half * t1), int(horizon + (height - horizon) * t1))
            cv2.line(img, p0, p1, (220, 220, 220), max(1, int(6 * t1 * width / 1920)))
    # Background blocks (buildings / trees) along the horizon.
    for _ in range(int(rng.integers(6, 14))):
        bw, bh = int(rng.uniform(0.03, 0.12) * width), int(rng.uniform(0.03, 0.2) * height)
        bx = int(rng.uniform(0, width - bw))
        if abs(bx + bw / 2 - vx) < road_half * 0.05:
            continue
        cv2.rectangle(img, (bx, horizon - bh), (bx + bw, horizon), tuple(float(v) for v in rng.uniform(40, 160, 3)), -1)

    # Objects: depth t in (0, 1] from the horizon (far) to the bottom edge (near); pixels per metre grow with t.
    px_per_m_near = height / 4.0
    objects = []
    for _ in range(int(rng.integers(max_objects // 3, max_objects + 1))):
        label = int(rng.choice(len(CLASSES), p=[0.38, 0.1, 0.22, 0.1, 0.1, 0.1]))
        name = CLASSES[label]
        t = float(rng.uniform(0.02, 1.0) ** 1.6)  # more far (small) objects than near ones
        y_bottom = int(horizon + (height - horizon) * t)
        scale = px_per_m_near * t
        if name in ("car", "truck"):
            lateral = rng.uniform(-0.8, 0.8)
        elif name in ("pedestrian", "cyclist"):
            lateral = rng.choice([-1, 1]) * rng.uniform(0.75, 1.25)
        else:
            lateral = rng.choice([-1, 1]) * rng.uniform(1.1, 1.4)
        x = int(vx + lateral * road_half * t)
        w_m, h_m = _SIZES_M[name]
        w = max(4, int(w_m * scale * rng.uniform(0.9, 1.2)))
        h = max(6, int(h_m * scale * rng.uniform(0.9, 1.1)))
        if name in ("traffic_sign", "traffic_light"):
            y_bottom = int(y_bottom - 1.6 * scale)  # on a pole above the ground
            h = max(h, 8)
        objects.append((t, label, x, y_bottom, w, h))
    objects.sort(key=lambda o: o[0])  # far first: nearer objects are drawn over them

    # Far to near: each object owns the pixels it paints, so nearer ones hide farther ones.
    owner = np.full((height, width), -1, np.int32)
    placed = []
    for index, (t, label, x, y_bottom, w, h) in enumerate(objects):
        name = CLASSES[label]
        sil = _silhouette(name, w, h)
        x1, y1 = x - w // 2, y_bottom - h
        _paste(img, owner, sil, x1, y1, tuple(float(v) for v in rng.uniform(20, 235, 3)), index)
        if name == "traffic_light":  # one lit lamp
            lamp = int(rng.integers(0, 3))
            cv2.circle(img, (x, y1 + h * (1 + 2 * lamp) // 9), max(1, w // 3),
                       ((0, 0, 255), (0, 200, 255), (0, 255, 0))[lamp], -1)
        placed.append((label, x1, y1, x1 + w, y1 + h, int(sil.sum())))
    boxes = []
    for index, (label, x1, y1, x2, y2, area) in enumerate(placed):
        cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
        if cx2 - cx1 < 2 or cy2 - cy1 < 2:
            continue
        visible = int(np.count_nonzero(owner[cy1:cy2, cx1:cx2] == index))
        if visible >= MIN_VISIBLE * max(1, area):  # boxes keep the object's extent (clipped to the frame)
            boxes.append(Box(float(cx1), float(cy1), float(cx2), float(cy2), label))

    # Lighting and sensor: global gain/gamma, a colour cast, noise, and a little blur.
    out = img.astype(np.float32) / 255.0
    out = np.clip(out * rng.uniform(0.6, 1.3), 0, 1) ** rng.uniform(0.8, 1.25)
    out *= rng.uniform(0.9, 1.1, 3)
    out = out * 255.0 + rng.normal(0, rng.uniform(1, 8), out.shape)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (3, 3), 0)
    return out, boxes


def coco_dataset(frames: list[tuple[str, int, int, list[Box]]]) -> dict:
    """COCO detection JSON for [(file_name, height, width, boxes)]; category ids are label + 1."""
    images, annotations = [], []
    for image_id, (file_name, height, width, boxes) in enumerate(frames, start=1):
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for b in boxes:
            w, h = b.x2 - b.x1, b.y2 - b.y1
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": b.label + 1,
                                "bbox": [b.x1, b.y1, w, h], "area": w * h, "iscrowd": 0})
    categories = [{"id": i + 1, "name": n, "supercategory": "road"} for i, n in enumerate(CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _render_to_file(job: tuple[Path, int, int, int]) -> tuple[str, int, int, list[Box]]:
    out, seed, height, width = job
    image, boxes = render_scene(seed, height, width)
    name = f"road_{seed:06d}.jpg"
    cv2.imwrite(str(out / "images" / name), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return name, height, width, boxes


def write_dataset(out_dir: str | Path, count: int, seed: int = 0, height: int = 1080, width: int = 1920,
                  workers: int = 1, progress=None) -> Path:
    """Render ``count`` frames into ``out_dir/images`` and write ``out_dir/annotations.json``.

    ``workers`` > 1 renders in that many processes; the output is the same (each frame depends on its seed only).
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    jobs = [(out, seed + i, height, width) for i in range(count)]
    frames = []
    if workers > 1:
        from multiprocessing import get_context

        with get_context("spawn").Pool(workers) as pool:
            for frame in pool.imap(_render_to_file, jobs, chunksize=4):
                frames.append(frame)
                if progress:
                    progress(len(frames), count)
    else:
        for job in jobs:
            frames.append(_render_to_file(job))
            if progress:
                progress(len(frames), count)
    path = out / "annotations.json"
    path.write_text(json.dumps(coco_dataset(frames)))
    return path


def write_clip(path: str | Path, frames: int = 6, height: int = 1080, width: int = 1920, fps: float = 10.0,
               seed: int = 0) -> None:
    """A video of ``frames`` scenes (seeds ``seed``, ``seed + 1``, ...) in MPEG-4 part 2, which any OpenCV
    build reads: test and benchmark input for the runtime."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot write video {path}")
    for t in range(frames):
        writer.write(render_scene(seed + t, height, width)[0])
    writer.release()
