"""Small layers shared by the model files."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from avssm.graph.metadata import DEFAULT_INPUT


def backbone_default_cfg(model) -> dict:
    """A classifier's or backbone's default config (what its exported file records): the normalization."""
    return {"input": dict(DEFAULT_INPUT)}


def check_single_map(model, indices) -> None:
    """forward_intermediates of a backbone with one feature map: ``indices`` may only name map 0."""
    if indices is not None and list(indices) != [0]:
        raise ValueError(f"{type(model).__name__} has one feature map (index 0), not {list(indices)}")


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (keeps nn.LayerNorm's parameter names)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Linear2d(nn.Linear):
    """A 1x1 convolution stored as an nn.Linear weight (out, in), as the official checkpoints do.

    Checkpoints may also store the weight 4-D (out, in, 1, 1); the loader reshapes those.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight[:, :, None, None], self.bias)


class RMSNorm(nn.Module):
    """RMSNorm without bias (Vim); computed in fp32."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


class DropPath(nn.Module):
    """Stochastic depth per sample; identity at inference."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


def drop_path_rates(rate: float, n: int) -> list[float]:
    """Linearly increasing stochastic-depth rates 0..rate over n blocks (torch.linspace, in Python)."""
    return [rate * i / (n - 1) if n > 1 else 0.0 for i in range(n)]


def init_dt_bias(dim: int, dt_min: float = 1e-3, dt_max: float = 0.1, floor: float = 1e-4) -> torch.Tensor:
    """Mamba's delta-bias init: softplus^-1 of dt drawn log-uniformly in [dt_min, dt_max]."""
    dt = torch.exp(torch.rand(dim) * (torch.log(torch.tensor(dt_max)) - torch.log(torch.tensor(dt_min)))
                   + torch.log(torch.tensor(dt_min))).clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))


def init_A_log(dim: int, d_state: int) -> torch.Tensor:
    """Mamba's S4D-real init: A = -(1..N) for every channel, stored as log."""
    return torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(dim, 1)


def to_half(model: nn.Module) -> nn.Module:
    """Convert ``model`` to fp16 in place, except the parameters its modules list in FP32_PARAMS
    (the scan's A, D and delta bias), which keep their fp32 values."""
    keep = {}
    for module in model.modules():
        for name in getattr(module, "FP32_PARAMS", ()):
            keep[(module, name)] = module.get_parameter(name).detach().float().clone()
    model.half()
    for (module, name), value in keep.items():
        module.get_parameter(name).data = value
    return model
