"""A fused SelectiveScan node (layout cross-2d or bidirectional) written as standard ops around one version 1 node:
the traversal copies the fused node avoids, the plain scan, and the merge. The same definition as
avssm/ops/cross_scan.py and avssm/ops/bidirectional_scan.py state, in ONNX.

The portable lowering uses it (then lowers the version 1 node), and so does :func:`unfuse_scans`, which rewrites a
file for a consumer that reads only version 1 nodes (`avssm build` and ONNX Runtime's TensorRT provider hand
TensorRT the unfused graph until a GPU has run the plugin's version 2 kernels).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import onnx
from onnx import helper

from avssm.graph.builder import GraphBuilder
from avssm.graph.scan_node import (DIRECTIONS, LAYOUT_BIDIRECTIONAL, LAYOUT_CROSS_2D, LAYOUT_SEQUENCE,
                                   PLUGIN_VERSION, attribute, is_scan_node, layout, node_inputs, value_shape,
                                   value_type)

INT64_MIN = np.iinfo(np.int64).min


class Unfused(NamedTuple):
    before: list  # the traversal copies: NodeProtos that feed ``scan``
    scan: onnx.NodeProto  # the version 1 node (layout sequence)
    after: list  # the merge, ending in the fused node's output
    initializers: list


def _flip(b: GraphBuilder, x: str) -> str:
    """x reversed along its last axis."""
    return b.op("Slice", [x, b.const([-1]), b.const([INT64_MIN]), b.const([-1]), b.const([-1])], "flip")


def _part(b: GraphBuilder, x: str, start: int, stop: int, axis: int = 1) -> str:
    return b.op("Slice", [x, b.const([start]), b.const([stop]), b.const([axis])], "part")


def _traverse(b: GraphBuilder, x: str) -> str:
    """(batch, 4, C, H, W) -> (batch, 4, C, L): direction k's map in direction k's order (cross_scan.traverse)."""
    parts = []
    for k in range(4):
        x_k = _part(b, x, k, k + 1)
        if k & 1:  # column-major
            x_k = b.op("Transpose", [x_k], "columns", perm=[0, 1, 2, 4, 3])
        x_k = b.op("Reshape", [x_k, b.const([0, 0, 0, -1])], "order")
        parts.append(_flip(b, x_k) if k >= 2 else x_k)
    return b.op("Concat", parts, "traversed", axis=1)


def _cross_2d(b: GraphBuilder, node, dim: int, y: str, out: str, out_cast: int | None) -> tuple[list, list]:
    u, delta, A, B, C, D, _, delta_bias = node_inputs(node)  # cross-2d has no z
    rows = b.op("Reshape", [u, b.const([0, 0, -1])], "u_rows")
    cols = b.op("Reshape", [b.op("Transpose", [u], perm=[0, 1, 3, 2]), b.const([0, 0, -1])], "u_columns")
    us = b.op("Concat", [rows, cols, _flip(b, rows), _flip(b, cols)], "us", axis=1)  # (batch, 4 * dim, L)
    ds = b.op("Reshape", [_traverse(b, delta), b.const([0, 4 * dim, -1])], "deltas")
    inputs = [us, ds, A, _traverse(b, B), _traverse(b, C)] + [t for t in (D, delta_bias) if t is not None]
    before, b.nodes = b.nodes, []

    ys = b.op("Reshape", [y, b.const([0, 4, dim, -1])], "ys")
    y_k = [b.op("Gather", [ys, b.const(k)], f"y{k}", axis=1) for k in range(4)]  # (batch, dim, L)
    rows = b.op("Add", [y_k[0], _flip(b, y_k[2])], "rows")
    cols = b.op("Add", [y_k[1], _flip(b, y_k[3])], "columns")
    shape = b.op("Shape", [u])  # (batch, dim, H, W)
    transposed = b.op("Gather", [shape, b.const([0, 1, 3, 2])], "shape_wh", axis=0)
    cols = b.op("Transpose", [b.op("Reshape", [cols, transposed])], "columns_map", perm=[0, 1, 3, 2])
    rows = b.op("Reshape", [rows, shape], "rows_map")
    _finish(b, "Add", [rows, cols], out, out_cast)
    return inputs, before


def _bidirectional(b: GraphBuilder, node, dim: int, y: str, out: str, out_cast: int | None,
                   dtype: int) -> tuple[list, list]:
    u, delta, A, B, C, D, z, delta_bias = node_inputs(node)

    def backward_flipped(x, split):  # direction 1's half of x along axis 1, reversed along L
        return b.op("Concat", [_part(b, x, 0, split), _flip(b, _part(b, x, split, 2 * split))], axis=1)

    inputs = [backward_flipped(u, dim), backward_flipped(delta, dim), A, backward_flipped(B, 1),
              backward_flipped(C, 1)]
    if D is not None:
        inputs.append(D)
    if z is not None:
        inputs.append(b.op("Concat", [z, _flip(b, z)], "zz", axis=1))
    if delta_bias is not None:
        inputs.append(delta_bias)
    before, b.nodes = b.nodes, []

    both = b.op("Add", [_part(b, y, 0, dim), _flip(b, _part(b, y, dim, 2 * dim))], "sum")
    _finish(b, "Div", [both, b.const(2.0, "two", helper.tensor_dtype_to_np_dtype(dtype))], out, out_cast)
    return inputs, before


def _finish(b: GraphBuilder, op_type: str, inputs: list, out: str, out_cast: int | None) -> None:
    if out_cast is None:
        b.op(op_type, inputs, out=out)
    else:
        b.op("Cast", [b.op(op_type, inputs, "merged")], out=out, to=out_cast)


def unfuse_node(node: onnx.NodeProto, dim: int, prefix: str, dtype: int, out_cast: bool = False) -> Unfused:
    """``node`` (a fused SelectiveScan; ``dim`` = its A's rows / directions; ``dtype`` = its u's ONNX type) as
    copies, a version 1 node writing ``prefix/ys`` and the merge writing the node's output. ``out_cast``: the
    version 1 node's output is taken as fp32 (the lowering makes it so), the merge runs in fp32 and is cast to
    ``dtype`` at the end; otherwise the merge runs in ``dtype``, the version 1 node's output type."""
    kind = layout(node)
    b = GraphBuilder(prefix)
    y = f"{prefix}/ys"
    cast = dtype if out_cast else None
    arithmetic = onnx.TensorProto.FLOAT if out_cast else dtype
    if kind == LAYOUT_CROSS_2D:
        inputs, before = _cross_2d(b, node, dim, y, node.output[0], cast)
    elif kind == LAYOUT_BIDIRECTIONAL:
        inputs, before = _bidirectional(b, node, dim, y, node.output[0], cast, arithmetic)
    else:
        raise ValueError(f"unfuse_node: node {node.name} has layout sequence; it is not fused")
    scan = helper.make_node(node.op_type, inputs, [y], name=f"{prefix}/scan", domain=node.domain,
                            has_D=attribute(node, "has_D"), has_z=attribute(node, "has_z"),
                            has_delta_bias=attribute(node, "has_delta_bias"),
                            delta_softplus=attribute(node, "delta_softplus"), plugin_version=PLUGIN_VERSION,
                            plugin_namespace=attribute(node, "plugin_namespace", b"avssm").decode())
    return Unfused(before, scan, b.nodes, b.initializers)


def fused_dim(node: onnx.NodeProto, a_rows: int) -> int:
    """The channels of the fused node's output: its A's rows over its directions."""
    return a_rows // DIRECTIONS[layout(node)]


def has_fused_scans(model: onnx.ModelProto) -> bool:
    """True if ``model`` has a SelectiveScan node of a fused layout (a version 2 node)."""
    return any(is_scan_node(n) and layout(n) != LAYOUT_SEQUENCE for n in model.graph.node)


def unfuse_scans(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose fused SelectiveScan nodes are written as version 1 nodes and standard ops (for a
    plugin library that reads only version 1 nodes). Nodes of layout sequence are kept as they are."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inferred = None
    nodes, inits = [], []
    for i, node in enumerate(out.graph.node):
        if not is_scan_node(node) or layout(node) == LAYOUT_SEQUENCE:
            nodes.append(node)
            continue
        inferred = inferred or onnx.shape_inference.infer_shapes(model)
        a_rows = value_shape(inferred, node.input[2])[0]
        if a_rows is None:
            raise ValueError(f"unfuse: node {node.name}: the rows of its A ({node.input[2]}) must be static")
        part = unfuse_node(node, fused_dim(node, a_rows), f"scan{i}/unfuse", value_type(inferred, node.input[0]))
        nodes.extend([*part.before, part.scan, *part.after])
        inits.extend(part.initializers)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(inits)
    del out.graph.value_info[:]
    return out
