"""The official VMamba code's cross-scan and cross-merge (``csm_triton``) on tensors Triton cannot run, and its
SS2D exported as one fused node.

``cross_scan_fn`` / ``cross_merge_fn`` pick the Triton class only for CUDA tensors, but enter
``torch.cuda.device(x.device)`` for every tensor, which fails on a CPU. Patched, CPU tensors go to the module's own
PyTorch classes (``CrossScanF``, ``CrossMergeF``) with no CUDA context, and export takes the cross-scan written out
of place (:func:`cross_scan_for_export`); CUDA tensors outside export are unchanged.

Fused export. Between its cross-scan and its cross-merge, the official ``SS2Dv2.forward_corev2`` projects each
direction's sequence (x_proj, dt_proj: pointwise), runs one grouped scan and merges. Exported as written that is
the traversal copies, a version 1 node and the merge. While exporting, ``forward_corev2`` (patched in the
official ``vmamba`` module) tells the cross-scan which SS2D calls it; the cross-scan then also computes the block's
scan as avssm's own VMamba does (:func:`avssm.ops.cross_scan.projected_cross_scan`: projections on the map, one
cross-2d node), and the cross-merge returns that instead of merging, when the two agree on the traced values
(1e-4 of the largest). The copies, the version 1 node and the merge are then unused, and left out of the file.
Where they disagree (code between the two that is not VMamba's projections) the merge is returned as written.
"""
from __future__ import annotations

import contextvars
import warnings

import torch

from avssm.compat import on_compiled_kernels
from avssm.compat.selective_scan_cuda import NotCoveredError
from avssm.ops import selective_scan_onnx
from avssm.ops.cross_scan import projected_cross_scan

# While an official SS2D's forward_corev2 is exported: [the module, its fused scan once the cross-scan computed it]
_exporting_ss2d: contextvars.ContextVar[list | None] = contextvars.ContextVar("avssm_compat_ss2d", default=None)


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


def _fusable(ss2d, x, in_channel_first, scans, one_by_one) -> bool:
    """Whether this cross-scan of ``ss2d`` can be exported fused: a four-direction cross-2d scan of a map, with the
    parameters of VMamba's SS2D in the shapes projected_cross_scan takes."""
    if scans != 0 or one_by_one or x.dim() != 4 or not selective_scan_onnx.exports_fused():
        return False
    names = ("x_proj_weight", "dt_projs_weight", "dt_projs_bias", "A_logs", "Ds")
    if not all(isinstance(getattr(ss2d, n, None), torch.Tensor) for n in names):
        return False
    k, rn, d = ss2d.x_proj_weight.shape if ss2d.x_proj_weight.dim() == 3 else (0, 0, 0)
    channels = x.shape[1] if in_channel_first else x.shape[3]
    n = ss2d.A_logs.shape[-1]
    r = ss2d.dt_projs_weight.shape[-1]
    return (k == 4 and d == channels and rn == r + 2 * n and tuple(ss2d.dt_projs_weight.shape) == (4, d, r)
            and ss2d.dt_projs_bias.numel() == 4 * d and tuple(ss2d.A_logs.shape) == (4 * d, n)
            and ss2d.Ds.numel() == 4 * d)


def _fused_scan(ss2d, x, in_channel_first):
    x_map = x if in_channel_first else x.permute(0, 3, 1, 2)
    bias = getattr(ss2d, "x_proj_bias", None)
    return projected_cross_scan(x_map, ss2d.x_proj_weight, ss2d.dt_projs_weight, ss2d.A_logs, ss2d.Ds,
                                ss2d.dt_projs_bias, x_proj_bias=bias if isinstance(bias, torch.Tensor) else None)


def _merged_or_fused(merged, fused):
    """The fused scan (batch, dim, H, W) in the merge's layout, where it equals the merge; else the merge."""
    flat = fused.flatten(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the comparison is not part of the graph
        for candidate in (flat, flat.transpose(1, 2)):
            if tuple(candidate.shape) == tuple(merged.shape):
                scale = float(merged.detach().abs().max()) if merged.numel() else 0.0
                error = float((candidate.detach() - merged.detach().float()).abs().max())
                if error <= 1e-4 * max(scale, 1e-6):
                    return candidate.to(merged.dtype)
    return merged


def patch_vmamba(module) -> None:
    """The official ``vmamba`` module: while exporting, its SS2Dv2.forward_corev2 names the SS2D the cross-scan
    belongs to (see the module's docstring)."""
    cls = getattr(module, "SS2Dv2", None)
    original = getattr(cls, "forward_corev2", None)
    if not callable(original) or hasattr(original, "__wrapped__"):
        return

    def forward_corev2(self, *args, **kwargs):
        if not torch.onnx.is_in_onnx_export():
            return original(self, *args, **kwargs)
        token = _exporting_ss2d.set([self, None])
        try:
            return original(self, *args, **kwargs)
        finally:
            _exporting_ss2d.reset(token)

    forward_corev2.__wrapped__ = original
    cls.forward_corev2 = forward_corev2


def patch_csm_triton(module) -> None:
    for name, torch_class in (("cross_scan_fn", "CrossScanF"), ("cross_merge_fn", "CrossMergeF")):
        original, function = getattr(module, name, None), getattr(module, torch_class, None)
        if not callable(original) or function is None or hasattr(original, "__wrapped__"):
            continue

        def routed(x, in_channel_first=True, out_channel_first=True, one_by_one=False, scans=0, force_torch=False,
                   _original=original, _function=function):
            if on_compiled_kernels(x):
                return _original(x, in_channel_first, out_channel_first, one_by_one, scans, force_torch)
            exporting = torch.onnx.is_in_onnx_export()
            if exporting and _function.__name__ == "CrossScanF":
                if one_by_one:
                    raise NotCoveredError("cross_scan_fn(one_by_one=True) cannot be exported yet")
                block = _exporting_ss2d.get()
                if block is not None and _fusable(block[0], x, in_channel_first, scans, one_by_one):
                    block[1] = _fused_scan(block[0], x, in_channel_first)
                return cross_scan_for_export(x, in_channel_first, out_channel_first, scans)
            merged = _function.apply(x, in_channel_first, out_channel_first, one_by_one, scans)
            block = _exporting_ss2d.get() if exporting else None
            if block is not None and block[1] is not None:  # the cross-merge of a fused block
                fused, block[1] = block[1], None
                return _merged_or_fused(merged, fused)
            return merged

        routed.__wrapped__ = original
        setattr(module, name, routed)
