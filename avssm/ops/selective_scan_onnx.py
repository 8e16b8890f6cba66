"""The selective scan as one ONNX node: ``trt.plugins::SelectiveScan`` (contract: avssm/csrc/trt/README.md).

During ``torch.onnx.export`` :func:`avssm.ops.selective_scan` routes here; the node's value in the trace
is computed by the function the caller passes (its normal path), and the exporter writes one node per call. Its inputs are u, delta, A,
B, C, then whichever of D, z, delta_bias the call uses, in that order (no empty-named inputs), with
int attributes ``has_D``, ``has_z``, ``has_delta_bias``, ``delta_softplus`` and the string attributes
TensorRT's ONNX parser uses to find the plugin (``plugin_version``, ``plugin_namespace``).

The fused operations (avssm.ops.cross_scan, avssm.ops.bidirectional_scan) route to :func:`fused_scan_onnx`: one
version 2 node with a ``layout`` attribute and the fused operation's own shapes. Within :func:`unfused_export`
models export their scans as version 1 nodes with the traversal copies around them instead (files for plugin
libraries that predate the layouts).

This module imports nothing from the operations that route here: each passes the function that computes its value.
"""
from __future__ import annotations

import contextlib
import contextvars

import torch

from avssm.graph.scan_node import (DOMAIN, FUSED_PLUGIN_VERSION, LAYOUT_BIDIRECTIONAL, LAYOUT_CROSS_2D, OP_TYPE,
                                   PLUGIN_NAMESPACE, PLUGIN_VERSION)

class ScanShapes:
    """What the export in progress learned of its scans, node by node, at the sizes it was traced at: the sequence
    lengths (the portable lowering sizes its chunks for them) and, for version 1 nodes, the groups of B and C
    (None for a fused node, whose layout fixes them); the lowering needs them static, and ONNX's shape inference
    loses them where the graph computes B's shape from a dynamic one."""

    def __init__(self):
        self.lengths: list[int] = []
        self.groups: list[int | None] = []


_recording: contextvars.ContextVar[ScanShapes | None] = contextvars.ContextVar("avssm_scan_shapes", default=None)


@contextlib.contextmanager
def recording_scans():
    """Within the block, each exported SelectiveScan node adds its length and groups to the ScanShapes this yields.
    Scoped to the calling thread or task: concurrent exports each get their own."""
    shapes = ScanShapes()
    token = _recording.set(shapes)
    try:
        yield shapes
    finally:
        _recording.reset(token)


_fused: contextvars.ContextVar[bool] = contextvars.ContextVar("avssm_fused_export", default=True)


@contextlib.contextmanager
def unfused_export():
    """Within the block, exports write each fused scan as its traversal copies and one version 1 node."""
    token = _fused.set(False)
    try:
        yield
    finally:
        _fused.reset(token)


def exports_fused() -> bool:
    """True unless inside :func:`unfused_export` (models ask this under torch.onnx.export)."""
    return _fused.get()


def _record(length: int, groups: int | None) -> None:
    shapes = _recording.get()
    if shapes is not None:
        shapes.lengths.append(int(length))
        shapes.groups.append(None if groups is None else int(groups))


class _SelectiveScanNode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        return value(u, delta, A, B, C, D, z, delta_bias, delta_softplus)

    @staticmethod
    def symbolic(g, value, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        optional = [t for t in (D, z, delta_bias) if t is not None]
        out = g.op(f"{DOMAIN}::{OP_TYPE}", u, delta, A, B, C, *optional,
                   has_D_i=int(D is not None), has_z_i=int(z is not None),
                   has_delta_bias_i=int(delta_bias is not None), delta_softplus_i=int(bool(delta_softplus)),
                   plugin_version_s=PLUGIN_VERSION, plugin_namespace_s=PLUGIN_NAMESPACE)
        out.setType(u.type())
        return out


def selective_scan_onnx(value, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Emit one SelectiveScan node (only meaningful inside torch.onnx.export). ``value(u, delta, A, B, C, D, z,
    delta_bias, delta_softplus)`` computes the node's value in the trace, without exporting."""
    _record(u.shape[-1], B.shape[1] if B.dim() == 4 else None)
    return _SelectiveScanNode.apply(value, u, delta, A.float(), B, C, None if D is None else D.float(), z,
                                    None if delta_bias is None else delta_bias.float(), bool(delta_softplus))


class _FusedScanNode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, layout, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        return value(u, delta, A, B, C, D, z, delta_bias, delta_softplus)

    @staticmethod
    def symbolic(g, value, layout, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        optional = [t for t in (D, z, delta_bias) if t is not None]
        out = g.op(f"{DOMAIN}::{OP_TYPE}", u, delta, A, B, C, *optional,
                   has_D_i=int(D is not None), has_z_i=int(z is not None),
                   has_delta_bias_i=int(delta_bias is not None), delta_softplus_i=int(bool(delta_softplus)),
                   layout_i=int(layout), plugin_version_s=FUSED_PLUGIN_VERSION, plugin_namespace_s=PLUGIN_NAMESPACE)
        if layout == LAYOUT_CROSS_2D:  # y is u's shape and dtype
            out.setType(u.type())
        elif z is not None:  # bidirectional: y (batch, dim, L) is the gate's shape, in u's dtype
            out.setType(z.type())
        else:  # bidirectional without a gate: u's type with half its channels (the exporter warns on no type)
            sizes = u.type().varyingSizes()
            if sizes is not None and len(sizes) == 3:
                out.setType(u.type().with_sizes([sizes[0], None if sizes[1] is None else sizes[1] // 2, sizes[2]]))
        return out


def fused_scan_onnx(value, layout, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Emit one version 2 SelectiveScan node of ``layout`` (LAYOUT_CROSS_2D: avssm.ops.cross_scan's shapes,
    LAYOUT_BIDIRECTIONAL: avssm.ops.bidirectional_scan's); only meaningful inside torch.onnx.export. ``value``
    as for :func:`selective_scan_onnx`."""
    if layout not in (LAYOUT_CROSS_2D, LAYOUT_BIDIRECTIONAL):
        raise ValueError(f"fused_scan_onnx: layout {layout} is not a fused layout")
    _record(u.shape[-1] * u.shape[-2] if layout == LAYOUT_CROSS_2D else u.shape[-1], None)
    return _FusedScanNode.apply(value, layout, u, delta, A.float(), B, C, None if D is None else D.float(), z,
                                None if delta_bias is None else delta_bias.float(), bool(delta_softplus))
