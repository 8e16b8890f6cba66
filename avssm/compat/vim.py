"""Vim's bundled mamba (mamba-1p1p1): its ``Mamba`` block with ``bimamba_type="v2"`` exported as one
bidirectional node.

Exported as written, the block is two version 1 nodes: the forward direction, and the backward one on a flipped
copy of its input, its output flipped back. While exporting, the patched ``Mamba.forward`` runs the block as
written, and also as avssm's own Vim mixer does (:func:`avssm.ops.bidirectional_scan.projected_bidirectional_scan`:
the backward direction's convolution anti-causal on the sequence as it is, both directions in one node of layout
bidirectional). Where the two agree on the traced values (1e-4 of the largest) the block returns the second, and
the exporter leaves the unused first out of the file; otherwise it returns what is written. Other blocks
(``bimamba_type`` v1 or none, mamba_ssm 1.x / 2.x) are not touched.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from avssm.ops import selective_scan_onnx
from avssm.ops.bidirectional_scan import projected_bidirectional_scan

_PARAMETERS = ("in_proj", "out_proj", "conv1d", "conv1d_b", "x_proj", "x_proj_b", "dt_proj", "dt_proj_b", "A_log",
               "A_b_log", "D", "D_b")


def _fusable(block, inference_params) -> bool:
    return (getattr(block, "bimamba_type", None) == "v2" and inference_params is None
            and getattr(block, "use_fast_path", False) and selective_scan_onnx.exports_fused()
            and all(hasattr(block, name) for name in _PARAMETERS))


def fused_forward(block, hidden_states):
    """The v2 block's output, (batch, L, d_model), with both directions in one bidirectional scan."""
    x, z = F.linear(hidden_states, block.in_proj.weight, block.in_proj.bias).transpose(1, 2).chunk(2, dim=1)
    y = projected_bidirectional_scan(block, x, z)  # the directions averaged
    if not getattr(block, "if_divide_out", False):
        y = y * 2  # the block sums them
    out = F.linear(y.to(hidden_states.dtype).transpose(1, 2), block.out_proj.weight, block.out_proj.bias)
    if getattr(block, "init_layer_scale", None) is not None:
        out = out * block.gamma
    return out


def _agree(written, fused) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the comparison is not part of the graph
        if not isinstance(written, torch.Tensor) or tuple(written.shape) != tuple(fused.shape):
            return False
        scale = float(written.detach().abs().max()) if written.numel() else 0.0
        return float((fused.detach().float() - written.detach().float()).abs().max()) <= 1e-4 * max(scale, 1e-6)


def patch_mamba_simple(module) -> None:
    """``mamba_ssm.modules.mamba_simple``: while exporting, a bimamba v2 block is one bidirectional node."""
    cls = getattr(module, "Mamba", None)
    original = getattr(cls, "forward", None)
    if not callable(original) or hasattr(original, "__wrapped__"):
        return

    def forward(self, hidden_states, inference_params=None, *args, **kwargs):
        written = original(self, hidden_states, inference_params, *args, **kwargs)
        if not torch.onnx.is_in_onnx_export() or args or kwargs or not _fusable(self, inference_params):
            return written
        fused = fused_forward(self, hidden_states)
        return fused if _agree(written, fused) else written

    forward.__wrapped__ = original
    cls.forward = forward
