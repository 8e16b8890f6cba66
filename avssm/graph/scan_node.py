"""The exported scan node, ``trt.plugins::SelectiveScan`` (contract: avssm/csrc/trt/README.md).

Its inputs are u, delta, A, B, C, then whichever of D, z, delta_bias the call uses, in that order (no
empty-named inputs), announced by the int attributes ``has_D``, ``has_z``, ``has_delta_bias``; with
``delta_softplus`` and the string attributes TensorRT's ONNX parser uses to find the plugin
(``plugin_version``, ``plugin_namespace``). :func:`split_inputs` is the one reader of that layout.
"""
from __future__ import annotations

import math
from typing import NamedTuple

DOMAIN = "trt.plugins"
OP_TYPE = "SelectiveScan"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "avssm"
OPTIONAL_INPUTS = ("D", "z", "delta_bias")


class ScanInputs(NamedTuple):
    u: object
    delta: object
    A: object
    B: object
    C: object
    D: object = None
    z: object = None
    delta_bias: object = None


def chunk_size(length: int) -> int:
    """The chunk size of a chunked scan over ``length`` tokens, for the PyTorch path and the portable lowering
    alike: about sqrt(L), which balances the scan inside the chunks against the scan across them, as a power of
    two in [16, 256] (at least 16 keeps the parallel work per step large)."""
    return 1 << min(8, max(4, int(math.log2(max(1, length)) // 2)))


def split_inputs(inputs, has_D, has_z, has_delta_bias) -> ScanInputs:
    """A node's inputs (names or values) -> ScanInputs, the optional ones None where their flag is 0."""
    inputs = list(inputs)
    if len(inputs) < 5:
        raise ValueError(f"{OP_TYPE}: {len(inputs)} inputs; the node has u, delta, A, B, C at least")
    rest = inputs[5:]
    flags = (has_D, has_z, has_delta_bias)
    if len(rest) != sum(bool(f) for f in flags):
        raise ValueError(f"{OP_TYPE}: {len(rest)} optional inputs but the has_* attributes announce "
                         f"{sum(bool(f) for f in flags)}")
    optional = [rest.pop(0) if flag else None for flag in flags]
    return ScanInputs(*inputs[:5], *optional)


def attribute(node, name: str, default=0):
    """An attribute of an ONNX node by name (``default`` when absent)."""
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def node_inputs(node) -> ScanInputs:
    """The input names of a SelectiveScan NodeProto, by role."""
    return split_inputs(node.input, attribute(node, "has_D"), attribute(node, "has_z"), attribute(node, "has_delta_bias"))


def is_scan_node(node) -> bool:
    return node.op_type == OP_TYPE and node.domain == DOMAIN


def scan_node_names(model) -> list[str]:
    """Names of the SelectiveScan nodes of a ModelProto (empty: the portable form)."""
    return [n.name for n in model.graph.node if is_scan_node(n)]
