"""The exported scan node, ``trt.plugins::SelectiveScan`` (contract: avssm/csrc/trt/README.md).

Its inputs are u, delta, A, B, C, then whichever of D, z, delta_bias the call uses, in that order (no
empty-named inputs), announced by the int attributes ``has_D``, ``has_z``, ``has_delta_bias``; with
``delta_softplus`` and the string attributes TensorRT's ONNX parser uses to find the plugin
(``plugin_version``, ``plugin_namespace``). :func:`split_inputs` is the one reader of that layout.

Version 2 nodes add the int attribute ``layout``: LAYOUT_CROSS_2D is VMamba's four directions on the (H, W) map
with the cross-merge, LAYOUT_BIDIRECTIONAL Vim's two directions on one sequence (shapes in the contract). A node
without ``layout`` (every version 1 node) is LAYOUT_SEQUENCE.
"""
from __future__ import annotations

import itertools
import math
from typing import NamedTuple

DOMAIN = "trt.plugins"
OP_TYPE = "SelectiveScan"
PLUGIN_VERSION = "1"          # nodes of LAYOUT_SEQUENCE: every plugin library reads them
FUSED_PLUGIN_VERSION = "2"    # nodes with a layout attribute: plugin libraries that know the layouts
LAYOUT_SEQUENCE, LAYOUT_CROSS_2D, LAYOUT_BIDIRECTIONAL = 0, 1, 2
LAYOUT_NAMES = {LAYOUT_SEQUENCE: "sequence", LAYOUT_CROSS_2D: "cross-2d", LAYOUT_BIDIRECTIONAL: "bidirectional"}
DIRECTIONS = {LAYOUT_SEQUENCE: 1, LAYOUT_CROSS_2D: 4, LAYOUT_BIDIRECTIONAL: 2}  # scan groups per output channel
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


def layout(node) -> int:
    """A SelectiveScan NodeProto's layout (LAYOUT_SEQUENCE when it has none); an unknown one raises."""
    value = attribute(node, "layout", LAYOUT_SEQUENCE)
    if value not in LAYOUT_NAMES:
        raise ValueError(f"{OP_TYPE} node {node.name}: layout {value} is not one of "
                         f"{', '.join(f'{k} ({v})' for k, v in LAYOUT_NAMES.items())}; a newer avssm wrote it")
    return value


def _graphs(graph):
    """``graph`` and every subgraph inside it (If / Loop / Scan bodies)."""
    yield graph
    for node in graph.node:
        for a in node.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _graphs(sub)


def check_scan_node(node) -> None:
    """Raise ValueError, naming the node and what to fix, when a SelectiveScan node breaks the contract in a way
    no implementation may be handed: attributes that are not int 0/1, an unknown layout, an input count that
    the has_* attributes do not announce, an empty input or output name (an omitted optional input)."""
    where = f"{OP_TYPE} node '{node.name}'"
    for name in ("has_D", "has_z", "has_delta_bias", "delta_softplus"):
        found = [a for a in node.attribute if a.name == name]
        if len(found) != 1 or found[0].type != found[0].INT or found[0].i not in (0, 1):
            raise ValueError(f"{where}: attribute {name} must be one int, 0 or 1; re-export the model")
    found = [a for a in node.attribute if a.name == "layout"]
    if found and (len(found) != 1 or found[0].type != found[0].INT):
        raise ValueError(f"{where}: attribute layout must be one int; re-export the model")
    if found and found[0].i not in LAYOUT_NAMES:
        raise ValueError(f"{where}: layout {found[0].i} is not one of "
                         f"{', '.join(f'{k} ({v})' for k, v in LAYOUT_NAMES.items())}; a newer avssm wrote it")
    try:
        node_inputs(node)
    except ValueError as e:
        raise ValueError(f"{where}: {str(e).removeprefix(OP_TYPE + ': ')}; re-export the model") from None
    empty = [i for i, name in enumerate(node.input) if not name]
    if empty:
        raise ValueError(f"{where}: input {empty[0]} has an empty name; name its tensor, or drop it and set its "
                         "has_* attribute to 0")
    if len(node.output) != 1 or not node.output[0]:
        raise ValueError(f"{where}: has {len(node.output)} outputs, expected one named output y")


def check_scan_nodes(model) -> None:
    """check_scan_node on every SelectiveScan node of a ModelProto, subgraphs included."""
    for graph in _graphs(model.graph):
        for node in graph.node:
            if is_scan_node(node):
                check_scan_node(node)


def is_scan_node(node) -> bool:
    return node.op_type == OP_TYPE and node.domain == DOMAIN


def scan_node_names(model) -> list[str]:
    """Names of the SelectiveScan nodes of a ModelProto (empty: the portable form)."""
    return [n.name for n in model.graph.node if is_scan_node(n)]


def layout_counts(model) -> dict[str, int]:
    """How many SelectiveScan nodes of each layout a ModelProto's main graph has, by layout name."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if is_scan_node(node):
            counts[LAYOUT_NAMES[layout(node)]] = counts.get(LAYOUT_NAMES[layout(node)], 0) + 1
    return counts


def value_shape(model, name: str) -> list:
    """The shape of tensor ``name`` in a ModelProto (run shape inference first), None for a dynamic extent."""
    for vi in itertools.chain(model.graph.value_info, model.graph.input, model.graph.output):
        if vi.name == name:
            return [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
    for init in model.graph.initializer:
        if init.name == name:
            return list(init.dims)
    raise ValueError(f"no shape known for tensor '{name}'")


def value_type(model, name: str) -> int:
    """The ONNX element type of tensor ``name`` in a ModelProto (run shape inference first); FLOAT when unknown."""
    for vi in itertools.chain(model.graph.value_info, model.graph.input, model.graph.output):
        if vi.name == name and vi.type.tensor_type.elem_type:
            return vi.type.tensor_type.elem_type
    for init in model.graph.initializer:
        if init.name == name:
            return init.data_type
    return 1  # onnx.TensorProto.FLOAT
