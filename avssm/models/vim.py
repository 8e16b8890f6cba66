"""Vim (Zhu et al., "Vision Mamba: Efficient Visual Representation Learning with Bidirectional State
Space Model", ICML 2024).

Written from the paper and the official hustvl/Vim ``vim/models_mamba.py`` with its ``mamba-1p1p1``
mixer (``bimamba_type="v2"``, fast path: the model as trained). Parameter names and shapes are the
official ones. The official non-fast path silently drops the backward direction; this file always
runs both.

Forward: patch embed -> class token inserted at M//2 -> + position embedding -> 24 pre-norm blocks
(RMSNorm, bidirectional Mamba mixer, fp32 residual stream) -> final RMSNorm -> head on the middle
token. Any input size works: the position embedding is resized around its class-token slot.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from avssm.models.layers import (DropPath, RMSNorm, backbone_default_cfg, check_single_map, drop_path_rates, init_A_log,
                                 init_dt_bias)
from avssm.models.registry import register_model
from avssm.ops import selective_scan, selective_scan_onnx
from avssm.ops.bidirectional_scan import direction_inputs, projected_bidirectional_scan


@dataclass(frozen=True)
class VimConfig:
    embed_dim: int = 192
    depth: int = 24
    patch_size: int = 16
    stride: int = 16
    img_size: int = 224  # size the position embedding was trained at
    d_state: int = 16
    expand: int = 2
    d_conv: int = 4
    num_classes: int = 1000
    drop_path_rate: float = 0.0

    def grid(self, h: int, w: int) -> tuple[int, int]:
        return (h - self.patch_size) // self.stride + 1, (w - self.patch_size) // self.stride + 1


class BiMambaMixer(nn.Module):
    """Mamba mixer run forward and backward over the sequence (Vim's bimamba v2).

    Each direction has its own conv1d / x_proj / dt_proj / A / D and is gated by SiLU(z) inside the
    scan; the backward branch sees x and z flipped. The two outputs are averaged and share out_proj.
    Both directions go through one selective-scan call as two groups of channels.
    """

    FP32_PARAMS = ("A_log", "A_b_log", "D", "D_b", "dt_proj.bias", "dt_proj_b.bias")  # see layers.to_half

    def __init__(self, dim: int, d_state: int, expand: int, d_conv: int):
        super().__init__()
        self.d_inner = di = expand * dim
        self.d_state = d_state
        self.dt_rank = r = math.ceil(dim / 16)
        self.in_proj = nn.Linear(dim, 2 * di, bias=False)
        self.out_proj = nn.Linear(di, dim, bias=False)
        for suffix in ("", "_b"):
            setattr(self, "conv1d" + suffix, nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1))
            setattr(self, "x_proj" + suffix, nn.Linear(di, r + 2 * d_state, bias=False))
            dt_proj = nn.Linear(r, di, bias=True)
            nn.init.uniform_(dt_proj.weight, -r**-0.5, r**-0.5)
            with torch.no_grad():
                dt_proj.bias.copy_(init_dt_bias(di))
            setattr(self, "dt_proj" + suffix, dt_proj)
        self.A_log = nn.Parameter(init_A_log(di, d_state))
        self.A_b_log = nn.Parameter(init_A_log(di, d_state))
        self.D = nn.Parameter(torch.ones(di))
        self.D_b = nn.Parameter(torch.ones(di))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: (B, L, D) -> (B, L, D). Both directions in one operation on the sequence as it is
        (avssm.ops.bidirectional_scan: the backward one walked backwards by index, no flipped copies); exported as
        one SelectiveScan node of layout bidirectional, or within unfused_export as flips, a version 1 node and the
        flip back."""
        if torch.onnx.is_in_onnx_export() and not selective_scan_onnx.exports_fused():
            return self._forward_flips(h)
        x, z = self.in_proj(h).transpose(1, 2).chunk(2, dim=1)  # (B, Di, L) each
        return self.out_proj(projected_bidirectional_scan(self, x, z).to(h.dtype).transpose(1, 2))

    def _forward_flips(self, h: torch.Tensor) -> torch.Tensor:
        """The same with the backward direction's inputs flipped and its output flipped back: the unfused export."""
        xz = self.in_proj(h).transpose(1, 2)  # (B, 2Di, L)
        x, z = xz.chunk(2, dim=1)
        xb, zb = x.flip(-1), z.flip(-1)
        u_f, dt_f, B_f, C_f = direction_inputs(x, self.conv1d, self.x_proj, self.dt_proj, self.d_state)
        u_b, dt_b, B_b, C_b = direction_inputs(xb, self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.d_state)
        y = selective_scan(
            torch.cat([u_f, u_b], 1), torch.cat([dt_f, dt_b], 1),
            -torch.exp(torch.cat([self.A_log, self.A_b_log], 0).float()),
            torch.stack([B_f, B_b], 1), torch.stack([C_f, C_b], 1),
            D=torch.cat([self.D, self.D_b]).float(), z=torch.cat([z, zb], 1),
            delta_bias=torch.cat([self.dt_proj.bias, self.dt_proj_b.bias]).float(), delta_softplus=True,
        )
        y_f, y_b = y.chunk(2, dim=1)
        return self.out_proj(((y_f + y_b.flip(-1)) / 2).transpose(1, 2))


class Block(nn.Module):
    def __init__(self, dim: int, cfg: VimConfig, drop_path: float):
        super().__init__()
        self.norm = RMSNorm(dim)
        self.mixer = BiMambaMixer(dim, cfg.d_state, cfg.expand, cfg.d_conv)
        self.drop_path = DropPath(drop_path)


class PatchEmbed(nn.Module):
    def __init__(self, cfg: VimConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, cfg.patch_size, stride=cfg.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)  # (B, D, gh, gw)


def resize_pos_embed(pos_embed: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Resize a (1, M+1, D) embedding whose class slot is at M//2 to a new (gh, gw) grid.

    The class slot is taken out, the M grid tokens are bicubic-resized, and the slot is put back
    at the new M'//2.
    """
    m = pos_embed.shape[1] - 1
    gh, gw = grid_hw
    if m == gh * gw:
        return pos_embed
    side = int(round(math.sqrt(m)))
    mid = m // 2
    cls = pos_embed[:, mid:mid + 1]
    grid = torch.cat([pos_embed[:, :mid], pos_embed[:, mid + 1:]], dim=1)
    grid = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=(gh, gw), mode="bicubic", align_corners=False).to(pos_embed.dtype)
    grid = grid.flatten(2).transpose(1, 2)
    new_mid = (gh * gw) // 2
    return torch.cat([grid[:, :new_mid], cls, grid[:, new_mid:]], dim=1)


class Vim(nn.Module):
    def __init__(self, cfg: VimConfig):
        super().__init__()
        self.config = cfg
        d = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg)
        gh, gw = cfg.grid(cfg.img_size, cfg.img_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, gh * gw + 1, d))
        rates = [0.0] + drop_path_rates(cfg.drop_path_rate, cfg.depth)
        self.layers = nn.ModuleList([Block(d, cfg, rates[i]) for i in range(cfg.depth)])
        self.norm_f = RMSNorm(d)
        self.final_drop_path = DropPath(cfg.drop_path_rate)
        self.head = nn.Linear(d, cfg.num_classes) if cfg.num_classes > 0 else None  # 0: a backbone
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.head is not None:
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def forward_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Image (B, 3, H, W) -> normalized tokens (B, M+1, D) with the class token at M//2, and the grid."""
        x = self.patch_embed(x)
        gh, gw = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        mid = x.shape[1] // 2
        x = torch.cat([x[:, :mid], self.cls_token.expand(x.shape[0], -1, -1), x[:, mid:]], dim=1)
        x = x + resize_pos_embed(self.pos_embed, (gh, gw))
        residual = x.float()  # the residual stream stays fp32
        h = self.layers[0].mixer(self.layers[0].norm(x))
        for layer in self.layers[1:]:
            residual = residual + layer.drop_path(h).float()
            h = layer.mixer(layer.norm(residual.to(x.dtype)))
        out = self.norm_f((residual + self.final_drop_path(h).float()).to(x.dtype))
        return out, (gh, gw)

    @property
    def feature_info(self) -> list[dict]:
        """One map (as timm lists it): the grid tokens after the final norm, at the patch stride."""
        return [{"num_chs": self.config.embed_dim, "reduction": self.config.stride, "module": "norm_f"}]

    default_cfg = property(backbone_default_cfg)

    def forward_intermediates(self, x: torch.Tensor, indices=None) -> list[torch.Tensor]:
        """[(B, D, gh, gw)]: the grid tokens (class token removed) as a map; ``indices`` may only name map 0."""
        check_single_map(self, indices)
        tokens, (gh, gw) = self.forward_tokens(x)
        mid = (gh * gw) // 2
        grid = torch.cat([tokens[:, :mid], tokens[:, mid + 1:]], dim=1)
        return [grid.transpose(1, 2).reshape(x.shape[0], -1, gh, gw)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, (gh, gw) = self.forward_tokens(x)
        return self.head(tokens[:, (gh * gw) // 2])


VIM_CONFIGS = {
    "vim_tiny": VimConfig(embed_dim=192),
    "vim_small": VimConfig(embed_dim=384),
    "vim_base": VimConfig(embed_dim=768),
    "vim_tiny_stride8": VimConfig(embed_dim=192, stride=8),
    "vim_small_stride8": VimConfig(embed_dim=384, stride=8),
}


def _make(name: str, **overrides) -> Vim:
    return Vim(replace(VIM_CONFIGS[name], **overrides))


@register_model
def vim_tiny(**overrides) -> Vim:
    return _make("vim_tiny", **overrides)


@register_model
def vim_small(**overrides) -> Vim:
    return _make("vim_small", **overrides)


@register_model
def vim_base(**overrides) -> Vim:
    return _make("vim_base", **overrides)


@register_model
def vim_tiny_stride8(**overrides) -> Vim:
    return _make("vim_tiny_stride8", **overrides)


@register_model
def vim_small_stride8(**overrides) -> Vim:
    return _make("vim_small_stride8", **overrides)
