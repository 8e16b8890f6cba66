"""The official VMamba code's cross-scan and cross-merge (``csm_triton``) on tensors Triton cannot run.

``cross_scan_fn`` / ``cross_merge_fn`` pick the Triton class only for CUDA tensors, but enter
``torch.cuda.device(x.device)`` for every tensor, which fails on a CPU. Patched, CPU tensors go to the module's own
PyTorch classes (``CrossScanF``, ``CrossMergeF``) with no CUDA context, and export takes the cross-scan written out
of place (:func:`cross_scan_for_export`); CUDA tensors outside export are unchanged.
"""
from __future__ import annotations

import torch

from avssm.compat import on_compiled_kernels
from avssm.compat.selective_scan_cuda import NotCoveredError


def cross_scan_for_export(x, in_channel_first=True, out_channel_first=True, scans=0):
    """The cross-scan's copies written out of place: the official PyTorch class writes them into slices of an empty
    tensor, which the ONNX exporter traces into a graph that computes something else."""
    if scans not in (0, 1, 2):
        raise NotCoveredError(f"cross_scan_fn(scans={scans}) cannot be exported yet; covered: scans 0, 1 and 2")
    if in_channel_first:
        batch, channels, height, width = x.shape
        rows, cols, axis, stack = x.flatten(2), x.transpose(2, 3).flatten(2), -1, 1
    else:
        batch, height, width, channels = x.shape
        rows, cols, axis, stack = x.flatten(1, 2), x.transpose(1, 2).flatten(1, 2), 1, 2
    second = cols if scans == 0 else rows
    flipped = scans != 1
    y = torch.stack([rows, second, rows.flip(axis) if flipped else rows, second.flip(axis) if flipped else second],
                    dim=stack)
    if in_channel_first and not out_channel_first:
        y = y.permute(0, 3, 1, 2).contiguous()
    elif not in_channel_first and out_channel_first:
        y = y.permute(0, 2, 3, 1).contiguous()
    return y


def patch_csm_triton(module) -> None:
    for name, torch_class in (("cross_scan_fn", "CrossScanF"), ("cross_merge_fn", "CrossMergeF")):
        original, function = getattr(module, name, None), getattr(module, torch_class, None)
        if not callable(original) or function is None or hasattr(original, "__wrapped__"):
            continue

        def routed(x, in_channel_first=True, out_channel_first=True, one_by_one=False, scans=0, force_torch=False,
                   _original=original, _function=function):
            if on_compiled_kernels(x):
                return _original(x, in_channel_first, out_channel_first, one_by_one, scans, force_torch)
            if torch.onnx.is_in_onnx_export() and _function.__name__ == "CrossScanF":
                if one_by_one:
                    raise NotCoveredError("cross_scan_fn(one_by_one=True) cannot be exported yet")
                return cross_scan_for_export(x, in_channel_first, out_channel_first, scans)
            return _function.apply(x, in_channel_first, out_channel_first, one_by_one, scans)

        routed.__wrapped__ = original
        setattr(module, name, routed)
