"""A Python implementation of the SelectiveScan node for ``onnx.reference`` (no TensorRT needed).

It reads the node exactly as the contract says (avssm/csrc/trt/README.md): inputs u, delta,
A, B, C, then D, z, delta_bias as flagged by ``has_*``; ``delta_softplus``; ``layout``. The arithmetic is
avssm's selective scan of that layout (the same semantics; on the CPU the compiled kernels).
"""
from __future__ import annotations

import numpy as np
from onnx.reference.op_run import OpRun

from avssm.graph.scan_node import (DOMAIN, LAYOUT_BIDIRECTIONAL, LAYOUT_CROSS_2D, LAYOUT_NAMES, LAYOUT_SEQUENCE,
                                   split_inputs)


class SelectiveScan(OpRun):  # the class name must equal the node's op_type
    op_domain = DOMAIN

    def _run(self, u, delta, A, B, C, *optional, has_D=0, has_z=0, has_delta_bias=0, delta_softplus=0,
             layout=LAYOUT_SEQUENCE, plugin_version=None, plugin_namespace=None):
        import torch

        from avssm.ops import selective_scan
        from avssm.ops.bidirectional_scan import bidirectional_selective_scan
        from avssm.ops.cross_scan import cross_selective_scan

        inputs = split_inputs((u, delta, A, B, C, *optional), has_D, has_z, has_delta_bias)
        t = {name: None if v is None else torch.from_numpy(np.array(v))  # a writable copy
             for name, v in inputs._asdict().items()}
        scans = {LAYOUT_SEQUENCE: selective_scan, LAYOUT_CROSS_2D: cross_selective_scan,
                 LAYOUT_BIDIRECTIONAL: bidirectional_selective_scan}
        if layout not in scans:
            raise ValueError(f"SelectiveScan: layout {layout} is not one of {sorted(LAYOUT_NAMES.items())}")
        scan = scans[layout]
        if layout == LAYOUT_CROSS_2D:
            if t.pop("z") is not None:
                raise ValueError("SelectiveScan: layout cross-2d takes no z")
        with torch.inference_mode():
            y = scan(**t, delta_softplus=bool(delta_softplus))
        return (y.numpy(),)


def reference_session(model):
    """An ``onnx.reference.ReferenceEvaluator`` that runs SelectiveScan nodes."""
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model, new_ops=[SelectiveScan])
