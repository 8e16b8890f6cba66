"""Training avssm's detectors on a COCO-format dataset (`avssm train`).

FCOS recipe: points of the strides-8/16/32 maps are assigned to the smallest ground-truth box that
contains them and whose size suits the level; losses are sigmoid focal (classes), GIoU (boxes,
weighted by the centerness target) and BCE (centerness). AdamW, linear warm-up then cosine decay,
gradient clipping, mixed precision on the GPU, flip and scale-jitter augmentation.

Checkpoints (``OUT/last.pth`` every epoch, ``OUT/final.pth``) hold the weights under ``model`` and the
model's name and config overrides under ``avssm``, so ``create_model(name, checkpoint=path)`` and
``avssm export --checkpoint`` rebuild the same detector (class names included).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from avssm.errors import AvssmError
from avssm.malloc import keep_freed_memory

LEVEL_RANGES = {8: (0.0, 64.0), 16: (64.0, 128.0), 32: (128.0, float("inf"))}
OBJECT_CROP_PROB = 0.75  # share of training crops placed around an object (the rest anywhere)


# ----------------------------------------------------------------------------------------- targets

def fcos_targets(points: torch.Tensor, strides: torch.Tensor, ranges: torch.Tensor, boxes: torch.Tensor,
                 labels: torch.Tensor, num_classes: int):
    """Per point: class target (P, C), box target (P, 4) xyxy, centerness target (P,), positive mask (P,).

    ``strides`` (P,) and ``ranges`` (P, 2) give each point's level and the box reach that level takes.
    """
    P = points.shape[0]
    if boxes.numel() == 0:
        return (points.new_zeros(P, num_classes), points.new_zeros(P, 4), points.new_zeros(P),
                torch.zeros(P, dtype=torch.bool, device=points.device))
    px, py = points[:, 0:1], points[:, 1:2]
    ltrb = torch.stack([px - boxes[:, 0], py - boxes[:, 1], boxes[:, 2] - px, boxes[:, 3] - py], dim=-1)  # (P, K, 4)
    inside = ltrb.min(dim=-1).values > 0
    # centre sampling: the point lies within 1.5 strides of the box centre
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    radius = 1.5 * strides[:, None]
    near_centre = ((px - cx).abs() < radius) & ((py - cy).abs() < radius)
    reach = ltrb.max(dim=-1).values
    ok = inside & near_centre & (reach >= ranges[:, 0:1]) & (reach <= ranges[:, 1:2])
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand(P, -1)
    area = torch.where(ok, area, torch.full_like(area, float("inf")))
    best_area, best = area.min(dim=1)
    positive = torch.isfinite(best_area)
    cls_t = points.new_zeros(P, num_classes)
    cls_t[positive, labels[best[positive]]] = 1.0
    box_t = boxes[best]
    d = ltrb[torch.arange(P, device=points.device), best].clamp(min=1e-6)
    ctr_t = torch.sqrt((d[:, [0, 2]].min(1).values / d[:, [0, 2]].max(1).values)
                       * (d[:, [1, 3]].min(1).values / d[:, [1, 3]].max(1).values))
    return cls_t, box_t, torch.where(positive, ctr_t, torch.zeros_like(ctr_t)), positive


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - GIoU per pair of xyxy boxes."""
    ix1, iy1 = torch.max(pred[:, 0], target[:, 0]), torch.max(pred[:, 1], target[:, 1])
    ix2, iy2 = torch.min(pred[:, 2], target[:, 2]), torch.min(pred[:, 3], target[:, 3])
    inter = (ix2 - ix1).clamp(min=0) * (iy2 - iy1).clamp(min=0)
    area_p = (pred[:, 2] - pred[:, 0]).clamp(min=0) * (pred[:, 3] - pred[:, 1]).clamp(min=0)
    area_t = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    union = area_p + area_t - inter + 1e-6
    ex1, ey1 = torch.min(pred[:, 0], target[:, 0]), torch.min(pred[:, 1], target[:, 1])
    ex2, ey2 = torch.max(pred[:, 2], target[:, 2]), torch.max(pred[:, 3], target[:, 3])
    enclose = (ex2 - ex1) * (ey2 - ey1) + 1e-6
    return 1 - (inter / union - (enclose - union) / enclose)


def detection_loss(model, images: torch.Tensor, targets: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """FCOS losses for a batch; ``targets`` holds (boxes xyxy, labels) per image in input pixels."""
    from avssm.models.detector import level_points

    raw = model.forward_raw(images)
    cls_all, dist_all, ctr_all, pts_all, strides_all, ranges_all = [], [], [], [], [], []
    for (cls, dist, ctr), stride in zip(raw, model.config.strides):
        b, c, h, w = cls.shape
        cls_all.append(cls.float().flatten(2).transpose(1, 2))
        dist_all.append(dist.float().flatten(2).transpose(1, 2))
        ctr_all.append(ctr.float().flatten(2).transpose(1, 2)[..., 0])
        pts = level_points(h, w, stride, cls.device)
        pts_all.append(pts)
        strides_all.append(torch.full((pts.shape[0],), float(stride), device=cls.device))
        ranges_all.append(torch.tensor(LEVEL_RANGES[stride], device=cls.device).expand(pts.shape[0], 2))
    cls_p, dist_p, ctr_p = torch.cat(cls_all, 1), torch.cat(dist_all, 1), torch.cat(ctr_all, 1)
    points, strides, ranges = torch.cat(pts_all), torch.cat(strides_all), torch.cat(ranges_all)
    num_classes = cls_p.shape[-1]
    cls_t, box_t, ctr_t, pos = zip(*[fcos_targets(points, strides, ranges, bx.to(points.device), lb.to(points.device),
                                                  num_classes) for bx, lb in targets])
    cls_t, box_t, ctr_t, pos = torch.stack(cls_t), torch.stack(box_t), torch.stack(ctr_t), torch.stack(pos)
    num_pos = max(1.0, float(pos.sum()))
    loss_cls = _focal(cls_p, cls_t).sum() / num_pos
    if pos.any():
        pts = points[None].expand_as(dist_p[..., :2])[pos]
        d = dist_p[pos]
        pred_boxes = torch.cat([pts - d[:, :2], pts + d[:, 2:]], dim=1)
        weight = ctr_t[pos]
        loss_box = (giou_loss(pred_boxes, box_t[pos]) * weight).sum() / weight.sum().clamp(min=1e-6)
        loss_ctr = F.binary_cross_entropy_with_logits(ctr_p[pos], ctr_t[pos], reduction="sum") / num_pos
    else:
        loss_box = loss_ctr = dist_p.sum() * 0.0
    return {"loss": loss_cls + loss_box + loss_ctr, "cls": loss_cls.detach(), "box": loss_box.detach(),
            "ctr": loss_ctr.detach(), "positives": num_pos}


def _focal(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    return ce * (1 - p_t) ** gamma * (alpha * targets + (1 - alpha) * (1 - targets))


# ----------------------------------------------------------------------------------------- data

def augment(frame: np.ndarray, boxes: np.ndarray, size: tuple[int, int], rng: np.random.Generator, train: bool,
            crop: tuple[int, int] | None = None):
    """Fit the frame into ``size`` (H, W) with scale jitter, take a ``crop`` (H, W; default ``size``) at a random
    place, mostly around an object (top-left when not training), random horizontal flip. Returns the image,
    boxes and a keep mask."""
    h, w = size
    ch, cw = crop or size
    scale = min(h / frame.shape[0], w / frame.shape[1]) * (rng.uniform(0.8, 1.25) if train else 1.0)
    nh, nw = max(1, int(round(frame.shape[0] * scale))), max(1, int(round(frame.shape[1] * scale)))
    img = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    bx = boxes * scale
    oy = ox = 0
    if train:
        # Most crops are placed to contain a random object's centre: a uniform crop of a road scene is
        # mostly sky and road, and positives are what a short (CPU) run is short of.
        focus = bx[int(rng.integers(len(bx)))] if len(bx) and rng.random() < OBJECT_CROP_PROB else None
        oy = _crop_offset(nh, ch, None if focus is None else (focus[1] + focus[3]) / 2, rng)
        ox = _crop_offset(nw, cw, None if focus is None else (focus[0] + focus[2]) / 2, rng)
    canvas = np.zeros((ch, cw, 3), np.uint8)
    part = img[oy:oy + ch, ox:ox + cw]
    canvas[:part.shape[0], :part.shape[1]] = part
    bx = bx - np.array([ox, oy, ox, oy], np.float32)
    bx[:, [0, 2]] = bx[:, [0, 2]].clip(0, part.shape[1])
    bx[:, [1, 3]] = bx[:, [1, 3]].clip(0, part.shape[0])
    if train and rng.random() < 0.5:
        canvas = canvas[:, ::-1].copy()
        bx[:, [0, 2]] = cw - bx[:, [2, 0]]
    keep = ((bx[:, 2] - bx[:, 0]) >= 2) & ((bx[:, 3] - bx[:, 1]) >= 2)
    return canvas, bx, keep


def _crop_offset(extent: int, crop: int, centre: float | None, rng: np.random.Generator) -> int:
    """A random offset of a ``crop`` window in ``extent`` pixels; the window contains ``centre`` when given."""
    if extent <= crop:
        return 0
    low, high = 0, extent - crop
    if centre is not None:
        low, high = max(low, int(centre) - crop + 1), min(high, int(centre))
    return int(rng.integers(low, high + 1))


class TrainingSet(torch.utils.data.Dataset):
    """Augmented, preprocessed samples of a CocoDataset; the randomness depends on (seed, epoch, index) only,
    so a run is the same with any number of loader workers."""

    def __init__(self, dataset, size: tuple[int, int], crop: tuple[int, int] | None, seed: int):
        self.dataset, self.size, self.crop, self.seed, self.epoch = dataset, size, crop, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        from avssm.runtime.preprocess import preprocess

        frame, boxes, labels = self.dataset[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        img, bx, keep = augment(frame, boxes, self.size, rng, train=True, crop=self.crop)
        return preprocess(img)[0], bx[keep], labels[keep]


def _collate(samples):
    images = torch.from_numpy(np.stack([s[0] for s in samples]))
    return images, [(torch.from_numpy(bx), torch.from_numpy(lb)) for _, bx, lb in samples]


# ----------------------------------------------------------------------------------------- loop

def lr_at(fraction: float, warmup: float, base: float) -> float:
    """Linear warm-up over the first ``warmup`` of training, then cosine decay to zero; both as fractions."""
    if fraction < warmup:
        return base * max(fraction, 1e-3) / warmup
    progress = (fraction - warmup) / max(1e-9, 1 - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(model_name: str, annotations: str, images: str, *, out_dir: str = "runs/train", epochs: int = 10,
          batch: int = 4, input_size: tuple[int, int] = (1080, 1920), crop: tuple[int, int] | None = None,
          lr: float = 1e-3, weight_decay: float = 0.05, checkpoint: str | None = None, resume: bool = False,
          device: str | None = None, seed: int = 0, max_steps: int | None = None, time_budget_s: float | None = None,
          workers: int | None = None, half_final: bool = False, overrides: dict | None = None, progress=None) -> dict:
    """Train and return {'history': [per-step losses], 'checkpoint': path, 'steps': n}.

    Frames are fitted into ``input_size`` (the size the detector will see) with scale jitter and trained on
    random ``crop``s of it. With ``time_budget_s`` the schedule runs on whichever of steps and time is further
    along, and training stops when either is used up. ``half_final`` stores final.pth's weights in fp16 (half
    the file; loading casts them back).
    """
    import os

    from avssm.datasets.coco import CocoDataset
    from avssm.models import create_model, load_checkpoint
    from avssm.models.checkpoint import read_checkpoint_file
    from avssm.outputs import atomic_output, check_not_input, check_output_dir

    check_output_dir(out_dir, "--out")
    for name in ("last.pth", "final.pth", "train_log.jsonl"):
        check_not_input(Path(out_dir) / name, "--out's", {"--checkpoint": checkpoint, "--data": annotations})
    dataset = CocoDataset(annotations, images)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        keep_freed_memory()  # a CPU step re-faulted its activations in every time (avssm/malloc.py)
    config_overrides = dict(overrides or {})
    config_overrides["class_names"] = tuple(dataset.class_names)
    model = create_model(model_name, **config_overrides)
    if not hasattr(model, "class_names"):
        raise AvssmError(f"model '{model_name}' is a classifier; `avssm train` trains detectors (*_det)")
    if checkpoint:
        load_checkpoint(model, checkpoint)  # an ImageNet backbone or a detector checkpoint
    model.to(device).train()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    steps_per_epoch = max(1, len(dataset) // batch)
    total = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    # Warm-up: 500 steps or a tenth of the run, whichever is less; 5% of a time-budgeted run.
    warmup_fraction = 0.05 if time_budget_s else min(500, max(1, total // 10)) / total
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    step, start_epoch = 0, 0
    if resume and (out / "last.pth").is_file():
        state = read_checkpoint_file(out / "last.pth")  # avssm's bounded reader, as for every checkpoint
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, start_epoch = state["step"], state["epoch"]
    use_amp = device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    samples = TrainingSet(dataset, input_size, crop, seed)
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    history = []
    log = open(out / "train_log.jsonl", "a", buffering=1)  # one line per step (flushed): losses, lr, time
    t0 = time.perf_counter()

    def progress_fraction() -> float:
        fraction = step / total
        if time_budget_s:
            fraction = max(fraction, (time.perf_counter() - t0) / time_budget_s)
        return fraction

    def save(path: Path, epoch: int, with_optimizer: bool = True, half: bool = False) -> None:
        weights = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
        state = {"model": weights, "step": step, "epoch": epoch, "avssm": {"model": model_name, "overrides": config_overrides}}
        if with_optimizer:
            state["optimizer"] = optimizer.state_dict()
        with atomic_output(path) as tmp:  # an interrupted save keeps the previous file
            torch.save(state, tmp)

    for epoch in range(start_epoch, epochs):
        samples.epoch = epoch
        order = torch.Generator().manual_seed(seed * 1000 + epoch)
        loader = torch.utils.data.DataLoader(samples, batch_size=batch, shuffle=True, generator=order, drop_last=True,
                                             num_workers=workers, collate_fn=_collate, pin_memory=use_amp)
        for x, targets in loader:
            if progress_fraction() >= 1.0:
                break
            x = x.to(device, non_blocking=True)
            fraction = progress_fraction()
            for group in optimizer.param_groups:
                group["lr"] = lr_at(fraction, warmup_fraction, lr)
            with torch.autocast(device.split(":")[0], dtype=torch.float16, enabled=use_amp):
                losses = detection_loss(model, x, targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses["loss"]).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            history.append({k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in losses.items()})
            log.write(json.dumps({"step": step, "lr": optimizer.param_groups[0]["lr"],
                                  "time_s": round(time.perf_counter() - t0, 2), **history[-1]}) + "\n")
            if progress:
                elapsed = time.perf_counter() - t0
                progress(step, total, history[-1]["loss"], elapsed * (1 - fraction) / max(fraction, 1e-9))
        save(out / "last.pth", epoch + 1)
        if progress_fraction() >= 1.0:
            break
    log.close()
    final = out / "final.pth"
    save(final, epochs, with_optimizer=False, half=half_final)
    return {"history": history, "checkpoint": str(final), "steps": step}
