"""COCO-format detection datasets (images folder + annotation JSON), read with the runtime's preprocessing.

    ds = CocoDataset("annotations.json", "images/")
    frame, boxes, labels = ds[0]          # uint8 BGR, (K, 4) xyxy float32, (K,) int64 in 0..C-1
    x = preprocess(frame)                 # the runtime's normalization (avssm.runtime.preprocess)

Errors in the JSON are reported on one line naming the file and the problem.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from avssm.errors import AvssmError
from avssm.images import ImageError, read_image_file


class CocoError(AvssmError):
    pass


def read_coco(path: str | Path) -> dict:
    """Load and check a COCO detection JSON."""
    path = Path(path)
    if not path.is_file():
        raise CocoError(f"annotations {path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CocoError(f"annotations {path}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise CocoError(f"annotations {path}: expected an object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise CocoError(f"annotations {path}: missing list '{key}'")
    image_ids = {img.get("id") for img in data["images"]}
    category_ids = {c.get("id") for c in data["categories"]}
    for img in data["images"]:
        if not {"id", "file_name"} <= set(img):
            raise CocoError(f"annotations {path}: image entry {img} lacks id or file_name")
    for ann in data["annotations"]:
        bbox = ann.get("bbox")
        if ann.get("image_id") not in image_ids:
            raise CocoError(f"annotations {path}: annotation {ann.get('id')} refers to unknown image {ann.get('image_id')}")
        if ann.get("category_id") not in category_ids:
            raise CocoError(f"annotations {path}: annotation {ann.get('id')} has unknown category {ann.get('category_id')}")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)
                and bbox[2] > 0 and bbox[3] > 0):
            raise CocoError(f"annotations {path}: annotation {ann.get('id')} has bbox {bbox}; expected [x, y, w, h], w, h > 0")
    return data


class CocoDataset:
    def __init__(self, annotations: str | Path, images_dir: str | Path):
        self.path = Path(annotations)
        self.data = read_coco(self.path)
        self.images_dir = Path(images_dir)
        if not self.images_dir.is_dir():
            raise CocoError(f"images {self.images_dir}: no such folder")
        cats = sorted(self.data["categories"], key=lambda c: c["id"])
        self.category_ids = [c["id"] for c in cats]
        self.class_names = [c["name"] for c in cats]
        self._label = {cid: i for i, cid in enumerate(self.category_ids)}
        self.images = sorted(self.data["images"], key=lambda i: i["id"])
        self._anns: dict[int, list] = {img["id"]: [] for img in self.images}
        for ann in self.data["annotations"]:
            if not ann.get("iscrowd", 0):
                self._anns[ann["image_id"]].append(ann)

    def __len__(self) -> int:
        return len(self.images)

    def targets(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        anns = self._anns[self.images[index]["id"]]
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in anns], np.float32).reshape(-1, 4)
        labels = np.array([self._label[a["category_id"]] for a in anns], np.int64)
        return boxes, labels

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        info = self.images[index]
        path = self.images_dir / info["file_name"]
        try:
            frame = read_image_file(path)
        except ImageError as e:
            raise CocoError(f"image {path}: missing or not readable (listed in {self.path}): "
                            f"{str(e).removeprefix(f'source {path}: ')}") from None
        boxes, labels = self.targets(index)
        return frame, boxes, labels
