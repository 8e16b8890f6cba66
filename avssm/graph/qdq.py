"""Q/DQ graph surgery for INT8 files: where Q/DQ pairs sit, which nodes keep higher precision, and putting
the SelectiveScan nodes back into a graph that was quantized through its portable lowering."""
from __future__ import annotations

import re

import onnx

from avssm.errors import AvssmError
from avssm.graph.scan_node import DOMAIN, OP_TYPE


class GraphError(AvssmError):
    pass


def keeps(node: onnx.NodeProto, patterns: list[re.Pattern], weights: set[str]) -> bool:
    """True if a keep pattern matches the node's name or one of its weights' names: VMamba's per-direction
    projections are MatMuls named after their module (``.../op/MatMul``), their weights after the parameter
    (``...op.x_proj_weight``)."""
    names = [node.name] + [i for i in node.input if i in weights]
    return any(p.search(name) for p in patterns for name in names)


def qdq_placement(model: onnx.ModelProto) -> set[tuple[str, str]]:
    """(quantized tensor, consumer node) for every DequantizeLinear output: where Q/DQ sits in a graph."""
    dq_out = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    q_in = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    placement = set()
    for node in model.graph.node:
        for name in node.input:
            if name in dq_out and node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
                placement.add((q_in.get(dq_out[name], dq_out[name]), node.name))
    return placement


def raise_scans(quantized: onnx.ModelProto, plugin: onnx.ModelProto) -> onnx.ModelProto:
    """Replace each ``scan{i}/`` lowering in ``quantized`` by the i-th node of ``plugin`` (same position)."""
    originals = {f"scan{i}": n for i, n in enumerate(plugin.graph.node) if n.op_type == OP_TYPE}
    out = onnx.ModelProto()
    out.CopyFrom(quantized)
    nodes, placed = [], set()
    for node in out.graph.node:
        prefix = node.name.split("/", 1)[0]
        if prefix in originals and node.name.startswith(prefix + "/"):
            if prefix not in placed:
                nodes.append(originals[prefix])
                placed.add(prefix)
            continue
        nodes.append(node)
    if placed != set(originals):
        raise GraphError(f"lost track of scan nodes {sorted(set(originals) - placed)} while quantizing")
    nodes = topological(nodes, {i.name for i in out.graph.input} | {t.name for t in out.graph.initializer})
    used = {name for n in nodes for name in n.input}
    inits = [t for t in out.graph.initializer if not t.name.startswith("scan") or t.name in used]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    del out.graph.initializer[:]
    out.graph.initializer.extend(inits)
    del out.graph.value_info[:]  # shapes of the removed lowering; TensorRT re-infers
    for op in plugin.opset_import:
        if op.domain == DOMAIN and not any(o.domain == DOMAIN for o in out.opset_import):
            out.opset_import.append(op)
    return out


def topological(nodes: list, available: set[str]) -> list:
    """Nodes reordered so that each comes after the producers of its inputs (stable otherwise)."""
    available = set(available) | {""}
    pending, ordered = list(nodes), []
    while pending:
        rest = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise GraphError(f"graph has a cycle or a missing input at node {rest[0].name}")
        pending = rest
    return ordered
