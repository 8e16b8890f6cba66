"""The official VMamba code's cross-scan and cross-merge (``csm_triton``) on tensors Triton cannot run.

``cross_scan_fn`` / ``cross_merge_fn`` pick the Triton class only for CUDA tensors, but enter
``torch.cuda.device(x.device)`` for every tensor, which fails on a CPU. Patched, CPU tensors and export go to the
module's own PyTorch classes (``CrossScanF``, ``CrossMergeF``) with no CUDA context; CUDA tensors outside export are
unchanged.
"""
from __future__ import annotations

import torch


def patch_csm_triton(module) -> None:
    for name, torch_class in (("cross_scan_fn", "CrossScanF"), ("cross_merge_fn", "CrossMergeF")):
        original, function = getattr(module, name, None), getattr(module, torch_class, None)
        if not callable(original) or function is None or hasattr(original, "__wrapped__"):
            continue

        def routed(x, in_channel_first=True, out_channel_first=True, one_by_one=False, scans=0, force_torch=False,
                   _original=original, _function=function):
            if x.is_cuda and not torch.onnx.is_in_onnx_export():
                return _original(x, in_channel_first, out_channel_first, one_by_one, scans, force_torch)
            return _function.apply(x, in_channel_first, out_channel_first, one_by_one, scans)

        routed.__wrapped__ = original
        setattr(module, name, routed)
