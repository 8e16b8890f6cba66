"""One-stage anchor-free detectors (FCOS-style) on VMamba and Vim backbones, for full camera frames.

    image (B, 3, H, W), normalized, any H x W
      -> padded bottom/right to a multiple of 32 (boxes stay in the caller's pixel frame)
      -> backbone features: VMamba stages at strides 8/16/32 through out-norms (taken before each
         stage's downsample); Vim's (or the ViT baseline's) stride-16 map through a ViTDet-style
         simple feature pyramid
      -> FPN / pyramid at strides 8, 16, 32 -> shared head (class logits, box distances, centerness)
      -> boxes (B, P, 4) xyxy in input pixels, scores (B, P, num_classes) = sqrt(cls * centerness)

No data-dependent Python control flow: the forward exports as one graph with dynamic H and W.
NMS is left to the caller (the runtime).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from avssm.datasets.classes import ROAD_CLASSES
from avssm.models.layers import LayerNorm2d, backbone_default_cfg
from avssm.models.registry import model_constructor, register_model



@dataclass(frozen=True)
class DetectorConfig:
    backbone: str = "vmamba_tiny"
    class_names: tuple[str, ...] = ROAD_CLASSES
    neck_channels: int = 128
    head_convs: int = 2
    strides: tuple[int, ...] = (8, 16, 32)
    pad_to: int = 32  # the input is padded to a multiple of this (the coarsest stride)
    backbone_overrides: dict = field(default_factory=dict, hash=False)  # e.g. reduced depths in tests

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class FPN(nn.Module):
    """Top-down feature pyramid: 1x1 laterals, nearest upsampling, 3x3 output convs."""

    def __init__(self, in_channels: list[int], out_channels: int):
        super().__init__()
        self.lateral = nn.ModuleList([nn.Conv2d(c, out_channels, 1) for c in in_channels])
        self.output = nn.ModuleList([nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels])

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest")
        return [conv(x) for conv, x in zip(self.output, laterals)]


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's pyramid from one stride-16 map: 2x deconv (8), identity (16), max-pool (32)."""

    def __init__(self, in_channels: int, out_channels: int, strides: tuple[int, ...]):
        super().__init__()
        self.levels = nn.ModuleList()
        for s in strides:
            if s == 8:
                resample = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)
                c = in_channels // 2
            elif s == 16:
                resample, c = nn.Identity(), in_channels
            elif s == 32:
                resample, c = nn.MaxPool2d(2), in_channels
            else:
                raise ValueError(f"SimpleFeaturePyramid: stride {s} not supported (8, 16, 32)")
            self.levels.append(nn.Sequential(resample, nn.Conv2d(c, out_channels, 1), LayerNorm2d(out_channels),
                                             nn.Conv2d(out_channels, out_channels, 3, padding=1), LayerNorm2d(out_channels)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [level(x) for level in self.levels]


class FCOSHead(nn.Module):
    """Shared FCOS head: class and box towers (conv-GN-ReLU), per-level learned box scale."""

    def __init__(self, channels: int, num_classes: int, num_convs: int, num_levels: int):
        super().__init__()

        def tower():
            layers = []
            for _ in range(num_convs):
                layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(min(32, channels // 4), channels), nn.ReLU()]
            return nn.Sequential(*layers)

        self.cls_tower = tower()
        self.box_tower = tower()
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box_pred = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(num_levels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_logits.bias, -4.595)  # prior 0.01 (focal loss)

    def forward(self, feats: list[torch.Tensor]):
        out = []
        for i, f in enumerate(feats):
            c, b = self.cls_tower(f), self.box_tower(f)
            out.append((self.cls_logits(c), F.relu(self.box_pred(b) * self.scales[i]), self.centerness(b)))
        return out


def level_points(h: int, w: int, stride: int, device: torch.device) -> torch.Tensor:
    """(h*w, 2) fp32 centres (x, y) in input pixels of a stride-s feature map, row-major."""
    ys = torch.arange(h, device=device, dtype=torch.float32) * stride + stride // 2
    xs = torch.arange(w, device=device, dtype=torch.float32) * stride + stride // 2
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)


class Detector(nn.Module):
    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        self.config = cfg
        self.class_names = list(cfg.class_names)
        self.backbone = model_constructor(cfg.backbone)(num_classes=0, **cfg.backbone_overrides)
        info = self.backbone.feature_info  # every backbone: channels and stride of each map it gives
        self.multi_scale = len(info) > 1
        if self.multi_scale:  # its maps at the detector's strides, normalized, into a top-down pyramid
            by_stride = {f["reduction"]: i for i, f in enumerate(info)}
            missing = [s for s in cfg.strides if s not in by_stride]
            if missing:
                raise ValueError(f"backbone {cfg.backbone} has no map at stride(s) {missing}")
            self.levels = [by_stride[s] for s in cfg.strides]
            channels = [info[i]["num_chs"] for i in self.levels]
            self.out_norms = nn.ModuleList([LayerNorm2d(c) for c in channels])
            self.neck = FPN(channels, cfg.neck_channels)
        else:  # one map: ViTDet's simple pyramid around it
            if info[0]["reduction"] != 16:
                raise ValueError(f"backbone {cfg.backbone}: the simple pyramid needs a stride-16 map, not "
                                 f"{info[0]['reduction']}")
            self.levels = [0]
            self.neck = SimpleFeaturePyramid(info[0]["num_chs"], cfg.neck_channels, cfg.strides)
        self.head = FCOSHead(cfg.neck_channels, cfg.num_classes, cfg.head_convs, len(cfg.strides))

    @property
    def default_cfg(self) -> dict:
        """What an exported file records about the model (avssm.graph.metadata): classes, normalization,
        padding."""
        return {**backbone_default_cfg(self), "class_names": list(self.class_names), "pad_to": self.config.pad_to}

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = self.backbone.forward_intermediates(x, self.levels)
        if self.multi_scale:
            return self.neck([norm(m) for norm, m in zip(self.out_norms, maps)])
        return self.neck(maps[0])

    def forward_raw(self, images: torch.Tensor):
        """Per level (class logits, box distances in pixels, centerness logits), on the padded image."""
        h, w = images.shape[-2:]
        p = self.config.pad_to
        x = F.pad(images, (0, (p - w % p) % p, 0, (p - h % p) % p))
        raw = self.head(self.features(x))
        # distances in fp32: in fp16 a large distance times the stride would overflow
        return [(cls, box.float() * s, ctr) for (cls, box, ctr), s in zip(raw, self.config.strides)]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) normalized -> boxes (B, P, 4) xyxy pixels (fp32), scores (B, P, C) before NMS."""
        h, w = images.shape[-2:]
        boxes, scores = [], []
        for (cls, dist, ctr), stride in zip(self.forward_raw(images), self.config.strides):
            b, c, fh, fw = cls.shape
            pts = level_points(fh, fw, stride, cls.device)
            dist = dist.float().flatten(2).transpose(1, 2)  # (B, P, 4): left, top, right, bottom; boxes in fp32
            boxes.append(torch.cat([pts - dist[..., :2], pts + dist[..., 2:]], dim=-1))
            score = torch.sigmoid(cls.flatten(2).transpose(1, 2)) * torch.sigmoid(ctr.flatten(2).transpose(1, 2))
            scores.append(torch.sqrt(score))
        boxes = torch.cat(boxes, dim=1)
        size = torch.stack([w, h, w, h]) if isinstance(w, torch.Tensor) else boxes.new_tensor([w, h, w, h])
        boxes = torch.minimum(boxes.clamp(min=0), size.to(boxes.dtype))  # clip to the caller's frame
        return boxes, torch.cat(scores, dim=1)


def _make(backbone: str, num_classes: int | None = None, **overrides) -> Detector:
    cfg = DetectorConfig(backbone=backbone)
    if num_classes is not None and num_classes != cfg.num_classes:
        overrides.setdefault("class_names", tuple(f"class{i}" for i in range(num_classes)))
    return Detector(replace(cfg, **overrides))


@register_model
def vmamba_tiny_det(**overrides) -> Detector:
    return _make("vmamba_tiny", **overrides)


@register_model
def vmamba_small_det(**overrides) -> Detector:
    return _make("vmamba_small", **overrides)


@register_model
def vmamba_base_det(**overrides) -> Detector:
    return _make("vmamba_base", **overrides)


@register_model
def vmamba_nano_det(**overrides) -> Detector:
    """avssm's edge detector (not a paper configuration): VMamba v2 blocks at width 48, depths 2-2-4-2, a
    96-channel neck; 6.5M parameters. The checkpoint shipped in avssm/data is this model trained on road scenes."""
    overrides.setdefault("backbone_overrides", {"embed_dim": 48, "depths": (2, 2, 4, 2), "drop_path_rate": 0.1})
    overrides.setdefault("neck_channels", 96)
    return _make("vmamba_tiny", **overrides)


@register_model
def vim_tiny_det(**overrides) -> Detector:
    return _make("vim_tiny", **overrides)


@register_model
def vim_small_det(**overrides) -> Detector:
    return _make("vim_small", **overrides)


@register_model
def vim_base_det(**overrides) -> Detector:
    return _make("vim_base", **overrides)


@register_model
def deit_tiny_det(**overrides) -> Detector:
    """The ViT baseline for `avssm bench` (DeiT-Tiny size, same pyramid and head as vim_tiny_det)."""
    return _make("deit_tiny", **overrides)
