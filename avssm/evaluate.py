"""COCO mAP with the maintained evaluator (pycocotools), for any source of detections.

    metrics = coco_map(dataset.data, detections)   # detections: [{image_id, category_id, bbox xywh, score}]
"""
from __future__ import annotations

import contextlib
import io

from avssm.errors import AvssmError

METRICS = ("map", "map50", "map75", "map_small", "map_medium", "map_large")


def coco_map(ground_truth: dict, detections: list[dict]) -> dict:
    """mAP@[.5:.95], mAP@.5, mAP@.75 and by object size (COCO's small < 32², large > 96² pixels)."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise AvssmError("evaluation needs pycocotools (pip install pycocotools)") from None
    gt = {"info": {}, "licenses": [], **ground_truth}
    gt["annotations"] = [{**a, "area": a.get("area", a["bbox"][2] * a["bbox"][3]), "iscrowd": a.get("iscrowd", 0)}
                         for a in gt["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if not detections:
            return {k: 0.0 for k in METRICS}
        coco_dt = coco_gt.loadRes(detections)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # stats: AP, AP50, AP75, AP_small, AP_medium, AP_large (-1 where a size class has no ground truth)
    return {k: float(v) for k, v in zip(METRICS, evaluator.stats[:6])}


def evaluate(model: str, annotations: str, images: str, *, backend: str = "auto", checkpoint: str | None = None,
             device: str = "cpu", score_threshold: float = 0.05, max_frames: int | None = None, progress=None,
             warn=None) -> dict:
    """COCO mAP of ``model`` (an exported file or a registered name) on a COCO dataset, through the
    runtime's backends and its own pre- and post-processing, so every form is measured the same way.
    ``max_frames`` evaluates the first N images only; ``warn`` is told when the model has random weights."""
    from avssm.datasets.coco import CocoDataset
    from avssm.runtime.pipeline import postprocess
    from avssm.runtime.preprocess import check_frame_fits, preprocess

    if max_frames is not None and max_frames < 1:
        raise AvssmError(f"--max-frames {max_frames}: must be at least 1")
    dataset = CocoDataset(annotations, images)
    from avssm.app import open_model

    be = open_model(model, backend, checkpoint=checkpoint, device=device)
    meta = be.metadata
    if meta.get("task") != "detection":
        raise AvssmError(f"model {meta.get('model')}: evaluation needs a detector")
    if warn is not None and (message := be.random_weights_warning()) is not None:
        warn(message)
    names = meta.get("class_names") or []
    if len(names) != len(dataset.class_names):
        raise AvssmError(f"model {meta.get('model')} has {len(names)} classes, annotations {annotations} have "
                         f"{len(dataset.class_names)}")
    count = min(len(dataset), max_frames) if max_frames else len(dataset)
    detections = []
    for i in range(count):
        frame, _, _ = dataset[i]
        check_frame_fits(be.fixed_hw, frame.shape, f"{images}/{dataset.images[i]['file_name']}", resize_flag=False)
        out = be.infer(preprocess(frame, meta["input"], be.input_dtype))
        for d in postprocess(out["boxes"][0], out["scores"][0], names, score_threshold=score_threshold):
            x1, y1, x2, y2 = d.box
            detections.append({"image_id": dataset.images[i]["id"], "category_id": dataset.category_ids[d.label],
                               "bbox": [x1, y1, x2 - x1, y2 - y1], "score": d.score})
        if progress:
            progress(i + 1, count)
    gt = dict(dataset.data)
    kept = {img["id"] for img in dataset.images[:count]}
    gt["images"] = [img for img in dataset.data["images"] if img["id"] in kept]
    gt["annotations"] = [a for a in dataset.data["annotations"] if a["image_id"] in kept]
    metrics = coco_map(gt, detections)
    return {"model": meta.get("model"), "backend": be.name, "precision": meta.get("precision"),
            "images": count, "detections": len(detections), **metrics}
