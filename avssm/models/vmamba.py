"""VMamba (Liu et al., "VMamba: Visual State Space Model", NeurIPS 2024).

Written from the paper and the official MzeroMiko/VMamba ``classification/models/vmamba.py``; the
parameter names and shapes are the official ones, so released checkpoints load as they are.

Two families:

* ``vmamba_tiny/small/base`` -- the paper's models (forward type ``v05_noz``): d_state 1, no z gate,
  conv stem (v2), 3x3 stride-2 conv downsample (v3), MLP ratio 4.
* ``vmamba_v0_tiny/small/base`` -- the original "Vanilla" models: d_state 16, SiLU(z) gate after
  out_norm, depthwise conv with bias, no MLP, 4x4 patch stem, Swin patch merging.

Everything runs channel-first (NCHW); the official channel-last v0 layout is the same arithmetic.
No position embedding: any input size works.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from avssm.models.layers import (DropPath, LayerNorm2d, Linear2d, backbone_default_cfg, drop_path_rates, init_A_log,
                                 init_dt_bias)
from avssm.models.registry import register_model
from avssm.ops import selective_scan, selective_scan_onnx
from avssm.ops.cross_scan import projected_cross_scan, traverse
from avssm.ops.cross_scan import merge as cross_merge

K_DIRECTIONS = 4


@dataclass(frozen=True)
class VMambaConfig:
    depths: tuple[int, ...] = (2, 2, 8, 2)
    embed_dim: int = 96  # width of stage 0; stage i has embed_dim * 2**i
    d_state: int = 1
    ssm_ratio: float = 1.0
    mlp_ratio: float = 4.0
    version: str = "v2"  # "v2": paper models (v05_noz); "v0": the original Vanilla-VMamba
    num_classes: int = 1000
    drop_path_rate: float = 0.2

    @property
    def dims(self) -> list[int]:
        return [self.embed_dim * 2**i for i in range(len(self.depths))]

    @property
    def gated(self) -> bool:
        return self.version == "v0"


# ----------------------------------------------------------------------------------- cross scan


def cross_scan(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4, C, L): row-major, column-major, and both reversed."""
    b, c, h, w = x.shape
    return traverse(x.unsqueeze(1).expand(b, K_DIRECTIONS, c, h, w))


# ----------------------------------------------------------------------------------- blocks


class SS2D(nn.Module):
    """2-D selective scan: in_proj, depthwise conv, 4-direction scan, out_norm, out_proj."""

    FP32_PARAMS = ("A_logs", "Ds", "dt_projs_bias")  # stay fp32 in a half-precision model (to_half)

    def __init__(self, dim: int, d_state: int, ssm_ratio: float, gated: bool):
        super().__init__()
        self.d_inner = d_inner = int(ssm_ratio * dim)
        self.d_state = d_state
        self.dt_rank = dt_rank = math.ceil(dim / 16)  # from the stage width, not d_inner
        self.gated = gated
        self.in_proj = Linear2d(dim, d_inner * (2 if gated else 1), bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, 3, padding=1, groups=d_inner, bias=gated)
        k = K_DIRECTIONS
        self.x_proj_weight = nn.Parameter(torch.empty(k, dt_rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d_inner, dt_rank))
        self.dt_projs_bias = nn.Parameter(init_dt_bias(k * d_inner).view(k, d_inner))
        self.A_logs = nn.Parameter(init_A_log(k * d_inner, d_state))
        self.Ds = nn.Parameter(torch.ones(k * d_inner))
        self.out_norm = LayerNorm2d(d_inner)
        self.out_proj = Linear2d(d_inner, dim, bias=False)
        nn.init.uniform_(self.x_proj_weight, -d_inner**-0.5, d_inner**-0.5)
        nn.init.uniform_(self.dt_projs_weight, -dt_rank**-0.5, dt_rank**-0.5)

    def scan(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Di, H, W) -> (B, Di, H, W) in fp32: the four directions' projections and scans, summed back at each
        position. Run here as one operation on the map (avssm.ops.cross_scan: the projections are pointwise, so
        they run on the map once for all directions, and the scan walks each direction's order by index);
        exported as one SelectiveScan node of layout cross-2d, or within unfused_export as the traversal copies,
        a version 1 node and the merge."""
        if torch.onnx.is_in_onnx_export() and not selective_scan_onnx.exports_fused():
            return self._scan_copies(x)
        return projected_cross_scan(x, self.x_proj_weight, self.dt_projs_weight, self.A_logs, self.Ds,
                                    self.dt_projs_bias)

    def _scan_copies(self, x: torch.Tensor) -> torch.Tensor:
        """The same as cross-scan copies, one grouped selective scan and cross-merge: the unfused export."""
        b, d, h, w = x.shape
        k, n, r = K_DIRECTIONS, self.d_state, self.dt_rank
        xs = cross_scan(x)  # (B, 4, Di, L)
        # Per-direction projections as broadcast matmuls, (k, c, d) @ (B, k, d, L): exported as MatMul, which
        # ONNX Runtime runs as batched GEMMs (its Einsum kernel took a quarter of the 1080p frame on a CPU).
        x_dbl = torch.matmul(self.x_proj_weight, xs)  # (B, 4, R + 2N, L)
        dts, Bs, Cs = torch.split(x_dbl, [r, n, n], dim=2)
        dts = torch.matmul(self.dt_projs_weight, dts)  # (B, 4, Di, L)
        L = h * w
        ys = selective_scan(
            xs.reshape(b, k * d, L), dts.reshape(b, k * d, L),
            -torch.exp(self.A_logs.float()), Bs, Cs,  # direction k is scan group k
            D=self.Ds.float(), delta_bias=self.dt_projs_bias.float().view(-1), delta_softplus=True,
        )
        return cross_merge(ys.float().view(b, k, d, L), h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.in_proj(x)
        if self.gated:
            x, z = x.chunk(2, dim=1)
        x = F.silu(self.conv2d(x))
        y = self.out_norm(self.scan(x).to(x.dtype))
        if self.gated:
            y = y * F.silu(z)
        return self.out_proj(y)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = Linear2d(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = Linear2d(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class VSSBlock(nn.Module):
    """Pre-norm residual block: x + SS2D(norm(x)), then x + MLP(norm2(x)) when the MLP exists."""

    def __init__(self, dim: int, cfg: VMambaConfig, drop_path: float):
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.op = SS2D(dim, cfg.d_state, cfg.ssm_ratio, cfg.gated)
        self.drop_path = DropPath(drop_path)
        self.has_mlp = cfg.mlp_ratio > 0
        if self.has_mlp:
            self.norm2 = LayerNorm2d(dim)
            self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.op(self.norm(x)))
        if self.has_mlp:
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class PatchMerging2D(nn.Module):
    """Swin patch merging (v0): 2x2 neighbours to channels, LayerNorm, linear 4C -> 2C."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = LayerNorm2d(4 * dim)
        self.reduction = Linear2d(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, w % 2, 0, h % 2))  # bottom/right to even, as the official code
        x = torch.cat([x[..., 0::2, 0::2], x[..., 1::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 1::2]], 1)
        return self.reduction(self.norm(x))


# Identity slots below keep the official module indices (their Permute layers), hence the key names.
def _patch_embed(cfg: VMambaConfig) -> nn.Sequential:
    c = cfg.embed_dim
    if cfg.version == "v0":
        return nn.Sequential(nn.Conv2d(3, c, 4, stride=4), nn.Identity(), LayerNorm2d(c))
    return nn.Sequential(
        nn.Conv2d(3, c // 2, 3, stride=2, padding=1), nn.Identity(), LayerNorm2d(c // 2), nn.Identity(),
        nn.GELU(), nn.Conv2d(c // 2, c, 3, stride=2, padding=1), nn.Identity(), LayerNorm2d(c))


def _downsample(cfg: VMambaConfig, dim: int, out_dim: int) -> nn.Module:
    if cfg.version == "v0":
        return PatchMerging2D(dim, out_dim)
    return nn.Sequential(nn.Identity(), nn.Conv2d(dim, out_dim, 3, stride=2, padding=1), nn.Identity(),
                         LayerNorm2d(out_dim))


_LEGACY_NAMES = [  # VMamba's released v0 files -> avssm's names
    (r"^patch_embed\.proj\.", "patch_embed.0."),
    (r"^patch_embed\.norm\.", "patch_embed.2."),
    (r"^(layers\.\d+\.blocks\.\d+)\.ln_1\.", r"\1.norm."),
    (r"^(layers\.\d+\.blocks\.\d+)\.self_attention\.", r"\1.op."),
    (r"^norm\.", "classifier.norm."),
    (r"^head\.", "classifier.head."),
]


def checkpoint_filter_fn(state: dict) -> dict:
    """An official VMamba state dict -> avssm's key names (the legacy v0 release used other names)."""
    out = {}
    for key, value in state.items():
        for pattern, repl in _LEGACY_NAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


class VMamba(nn.Module):
    """VMamba classifier or backbone: four stages at strides 4, 8, 16, 32 (``feature_info``), any input size."""

    checkpoint_filter = staticmethod(checkpoint_filter_fn)

    def __init__(self, cfg: VMambaConfig):
        super().__init__()
        self.config = cfg
        dims = cfg.dims
        self.patch_embed = _patch_embed(cfg)
        rates = drop_path_rates(cfg.drop_path_rate, sum(cfg.depths))
        self.layers = nn.ModuleList()
        for i, depth in enumerate(cfg.depths):
            first = sum(cfg.depths[:i])
            blocks = nn.Sequential(*[VSSBlock(dims[i], cfg, rates[first + j]) for j in range(depth)])
            last = i == len(cfg.depths) - 1
            downsample = nn.Identity() if last else _downsample(cfg, dims[i], dims[i + 1])
            self.layers.append(nn.Sequential(OrderedDict(blocks=blocks, downsample=downsample)))
        self.classifier = None  # num_classes=0: a backbone
        if cfg.num_classes > 0:
            self.classifier = nn.Sequential(OrderedDict(
                norm=LayerNorm2d(dims[-1]), avgpool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1),
                head=nn.Linear(dims[-1], cfg.num_classes)))
        self.apply(_init_weights)

    @property
    def feature_info(self) -> list[dict]:
        """Per stage (as timm lists them): channels, stride and the module whose output it is."""
        return [{"num_chs": d, "reduction": 4 * 2**i, "module": f"layers.{i}"} for i, d in enumerate(self.config.dims)]

    default_cfg = property(backbone_default_cfg)

    def forward_intermediates(self, x: torch.Tensor, indices=None) -> list[torch.Tensor]:
        """The maps of stages ``indices`` (default: all), each stage's output before its downsample, NCHW."""
        indices = list(range(len(self.layers))) if indices is None else list(indices)
        x = self.patch_embed(x)
        outs = {}
        for i, layer in enumerate(self.layers[:max(indices) + 1]):
            outs[i] = layer.blocks(x)
            x = layer.downsample(outs[i])
        return [outs[i] for i in indices]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.classifier(x)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# ------------------------------------------------------------------------------ registered models

_V2 = VMambaConfig()
_V0 = VMambaConfig(d_state=16, ssm_ratio=2.0, mlp_ratio=0.0, version="v0")
VMAMBA_CONFIGS = {
    # the paper's T[s1l8], S[s2l15], B[s2l15]
    "vmamba_tiny": replace(_V2, depths=(2, 2, 8, 2), ssm_ratio=1.0, drop_path_rate=0.2),
    "vmamba_small": replace(_V2, depths=(2, 2, 15, 2), ssm_ratio=2.0, drop_path_rate=0.3),
    "vmamba_base": replace(_V2, depths=(2, 2, 15, 2), embed_dim=128, ssm_ratio=2.0, drop_path_rate=0.6),
    "vmamba_v0_tiny": replace(_V0, depths=(2, 2, 9, 2), drop_path_rate=0.2),
    "vmamba_v0_small": replace(_V0, depths=(2, 2, 27, 2), drop_path_rate=0.3),
    "vmamba_v0_base": replace(_V0, depths=(2, 2, 27, 2), embed_dim=128, drop_path_rate=0.6),
}


def _make(name: str, **overrides) -> VMamba:
    return VMamba(replace(VMAMBA_CONFIGS[name], **overrides))


@register_model
def vmamba_tiny(**overrides) -> VMamba:
    return _make("vmamba_tiny", **overrides)


@register_model
def vmamba_small(**overrides) -> VMamba:
    return _make("vmamba_small", **overrides)


@register_model
def vmamba_base(**overrides) -> VMamba:
    return _make("vmamba_base", **overrides)


@register_model
def vmamba_v0_tiny(**overrides) -> VMamba:
    return _make("vmamba_v0_tiny", **overrides)


@register_model
def vmamba_v0_small(**overrides) -> VMamba:
    return _make("vmamba_v0_small", **overrides)


@register_model
def vmamba_v0_base(**overrides) -> VMamba:
    return _make("vmamba_v0_base", **overrides)


__all__ = ["VMamba", "VMambaConfig", "VMAMBA_CONFIGS", "cross_scan", "cross_merge"]
