"""A ViT baseline of DeiT-Tiny size (patch 16, width 192, depth 12, 3 heads) for `avssm bench`.

Built from ``torch.nn.TransformerEncoder`` (pre-norm, GELU), with a learned position embedding for a
224x224 grid, bicubic-resized to any input size. ``deit_tiny_det`` puts the same simple feature
pyramid and FCOS head as ``vim_tiny_det`` on its stride-16 map, so the two differ only in the mixer:
attention (quadratic in tokens) against the selective scan (linear).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from avssm.models.layers import backbone_default_cfg, check_single_map
from avssm.models.registry import register_model


@dataclass(frozen=True)
class ViTConfig:
    embed_dim: int = 192
    depth: int = 12
    heads: int = 3
    patch_size: int = 16
    img_size: int = 224
    mlp_ratio: float = 4.0
    num_classes: int = 1000


class ViT(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.config = cfg
        d = cfg.embed_dim
        grid = cfg.img_size // cfg.patch_size
        self.patch_embed = nn.Conv2d(3, d, cfg.patch_size, stride=cfg.patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, d, grid, grid))
        layer = nn.TransformerEncoderLayer(d, cfg.heads, int(d * cfg.mlp_ratio), dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.num_classes) if cfg.num_classes > 0 else None
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    @property
    def feature_info(self) -> list[dict]:
        """One map (as timm lists it): the normalized tokens at the patch stride."""
        return [{"num_chs": self.config.embed_dim, "reduction": self.config.patch_size, "module": "norm"}]

    default_cfg = property(backbone_default_cfg)

    def forward_intermediates(self, x: torch.Tensor, indices=None) -> list[torch.Tensor]:
        """[(B, D, H/16, W/16)]; ``indices`` may only name map 0."""
        check_single_map(self, indices)
        return [self._feature_map(x)]

    def _feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        b, d, gh, gw = x.shape
        pos = self.pos_embed
        if pos.shape[-2:] != (gh, gw):
            pos = F.interpolate(pos, size=(gh, gw), mode="bicubic", align_corners=False)
        tokens = self.norm(self.encoder((x + pos).flatten(2).transpose(1, 2)))
        return tokens.transpose(1, 2).reshape(b, d, gh, gw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._feature_map(x).mean(dim=(2, 3)))


@register_model
def deit_tiny(**overrides) -> ViT:
    return ViT(replace(ViTConfig(), **overrides))
