"""mamba_ssm's Triton norms (``layer_norm_fn``, ``rms_norm_fn``; ``RMSNorm`` calls the latter) on tensors Triton
cannot run: CPU tensors, and any tensor while exporting. The fused residual add is written out in PyTorch:

    s = x (+ residual), in fp32         residual_out = s in residual's dtype (fp32 with residual_in_fp32)
    y = norm(s) * weight (+ bias)       in x's dtype; prenorm returns (y, residual_out)

CUDA tensors outside export still take mamba_ssm's kernels. The parallel second norm (x1, weight1), rowscale and
returned dropout masks are not covered (one line says so).
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from avssm.compat import on_compiled_kernels
from avssm.compat.selective_scan_cuda import NotCoveredError


def add_norm(x, weight, bias=None, residual=None, eps=1e-6, dropout_p=0.0, prenorm=False, residual_in_fp32=False,
             is_rms_norm=False, x1=None, weight1=None, bias1=None, rowscale=None, return_dropout_mask=False):
    if x1 is not None or weight1 is not None or bias1 is not None or rowscale is not None or return_dropout_mask:
        raise NotCoveredError("avssm's stand-in for mamba_ssm's layer_norm_fn covers the residual add and one norm; "
                              "x1/weight1/bias1 (a second parallel norm), rowscale and return_dropout_mask are not "
                              "covered")
    residual_dtype = residual.dtype if residual is not None else (torch.float32 if residual_in_fp32 else x.dtype)
    s = F.dropout(x, p=dropout_p) if dropout_p > 0 else x
    s = s.float() + residual.float() if residual is not None else s.float()
    if is_rms_norm:
        y = s * torch.rsqrt(s.square().mean(dim=-1, keepdim=True) + eps) * weight.float()
        y = y + bias.float() if bias is not None else y
    else:
        y = F.layer_norm(s, s.shape[-1:], weight.float(), bias.float() if bias is not None else None, eps)
    y = y.to(x.dtype)
    return (y, s.to(residual_dtype)) if prenorm else y


def _stand_in(original, rms: bool):
    signature = inspect.signature(original)

    def norm_fn(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        x = bound.arguments.get("x")
        if on_compiled_kernels(x):
            return original(*args, **kwargs)  # Triton's kernel
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        if rms:
            arguments["is_rms_norm"] = True
        return add_norm(**arguments)

    norm_fn.__wrapped__ = original
    norm_fn.__doc__ = original.__doc__
    return norm_fn


def patch_layer_norm(module) -> None:
    """mamba_ssm.ops.triton.layer_norm (2.x) or .layernorm (1.x, Vim's 1.1.1): its layer_norm_fn and rms_norm_fn
    run Triton on CUDA tensors and avssm's PyTorch on the others and while exporting."""
    for name, rms in (("layer_norm_fn", False), ("rms_norm_fn", True)):
        original = getattr(module, name, None)
        if callable(original) and not hasattr(original, "__wrapped__"):
            setattr(module, name, _stand_in(original, rms))
