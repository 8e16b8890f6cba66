"""The selective scan as one ONNX node: ``trt.plugins::SelectiveScan`` (contract: avssm/csrc/trt/README.md).

During ``torch.onnx.export`` :func:`avssm.ops.selective_scan` routes here; the node's value in the trace
is computed by the normal path, and the exporter writes one node per call. Its inputs are u, delta, A,
B, C, then whichever of D, z, delta_bias the call uses, in that order (no empty-named inputs), with
int attributes ``has_D``, ``has_z``, ``has_delta_bias``, ``delta_softplus`` and the string attributes
TensorRT's ONNX parser uses to find the plugin (``plugin_version``, ``plugin_namespace``).
"""
from __future__ import annotations

import contextlib
import contextvars

import torch

from avssm.graph.scan_node import DOMAIN, OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION

# The list the export in progress (this thread or task) collects the scans' sequence lengths into, so that the
# portable lowering can size its chunks for the lengths the model was exported at: see recording_lengths().
_lengths: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("avssm_scan_lengths", default=None)


@contextlib.contextmanager
def recording_lengths():
    """Within the block, each exported SelectiveScan node appends its sequence length to the list this yields.
    Scoped to the calling thread or task: concurrent exports each get their own."""
    lengths: list[int] = []
    token = _lengths.set(lengths)
    try:
        yield lengths
    finally:
        _lengths.reset(token)


class _SelectiveScanNode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        from avssm.ops.selective_scan import _compute

        return _compute(u, delta, A, B, C, D, z, delta_bias, delta_softplus, False)

    @staticmethod
    def symbolic(g, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        optional = [t for t in (D, z, delta_bias) if t is not None]
        out = g.op(f"{DOMAIN}::{OP_TYPE}", u, delta, A, B, C, *optional,
                   has_D_i=int(D is not None), has_z_i=int(z is not None),
                   has_delta_bias_i=int(delta_bias is not None), delta_softplus_i=int(bool(delta_softplus)),
                   plugin_version_s=PLUGIN_VERSION, plugin_namespace_s=PLUGIN_NAMESPACE)
        out.setType(u.type())
        return out


def selective_scan_onnx(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Emit one SelectiveScan node (only meaningful inside torch.onnx.export)."""
    lengths = _lengths.get()
    if lengths is not None:
        lengths.append(int(u.shape[-1]))
    return _SelectiveScanNode.apply(u, delta, A.float(), B, C, None if D is None else D.float(), z,
                                    None if delta_bias is None else delta_bias.float(), bool(delta_softplus))
