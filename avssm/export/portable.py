"""Lower every ``SelectiveScan`` node to standard ONNX ops (the portable form).

The lowering is the chunked scan of avssm/ops/selective_scan.py written as an ONNX graph:

1. the sequence is padded to a multiple of ``chunk`` tokens (padding has delta 0, so it changes nothing)
   and cut into chunks;
2. a ``Scan`` over the ``chunk`` steps runs every chunk from a zero state at once, giving each chunk's
   local output and end state;
3. a ``Scan`` over the chunks carries the state across chunk boundaries (decay = exp(A * sum of the
   chunk's deltas));
4. a ``Scan`` over the steps adds each chunk's incoming state, decayed by exp(A * cumulative delta).

Every exponent is A times a sum of non-negative deltas, so nothing overflows for any L; softplus is
thresholded at 20 as in mamba_ssm. Math and state are fp32 whatever the node's dtype; the output is
cast back to u's dtype.
"""
from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from avssm.ops.selective_scan_onnx import OP_TYPE

DEFAULT_CHUNK = 64


class _Builder:
    """Appends nodes with unique names to a list."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._ids = itertools.count()

    def name(self, hint: str) -> str:
        return f"{self.prefix}/{hint}_{next(self._ids)}"

    def op(self, op_type: str, inputs: list[str], hint: str = "", n_out: int = 1, **attrs) -> str | list[str]:
        outputs = [self.name(hint or op_type) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=self.name(op_type), **attrs))
        return outputs[0] if n_out == 1 else outputs

    def const(self, value, hint: str = "const", dtype=np.int64) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name


def _attr(node: onnx.NodeProto, name: str, default: int = 0) -> int:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _value_shape(model: onnx.ModelProto, name: str) -> list:
    for vi in itertools.chain(model.graph.value_info, model.graph.input, model.graph.output):
        if vi.name == name:
            return [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
    for init in model.graph.initializer:
        if init.name == name:
            return list(init.dims)
    raise ValueError(f"portable lowering: no shape known for tensor '{name}'")


def _body_graph(name, nodes, inputs, outputs) -> onnx.GraphProto:
    f32 = TensorProto.FLOAT
    return helper.make_graph(nodes, name, [helper.make_tensor_value_info(i, f32, None) for i in inputs],
                             [helper.make_tensor_value_info(o, f32, None) for o in outputs])


def _lower_node(node: onnx.NodeProto, dims: tuple[int, int, int], out_dtype: int, chunk: int, prefix: str) -> _Builder:
    dim, nstate, groups = dims
    per_group = dim // groups
    T = chunk
    b = _Builder(prefix)
    f32 = TensorProto.FLOAT
    names = list(node.input)
    u, delta, A, B, C = names[:5]
    rest = names[5:]
    D = rest.pop(0) if _attr(node, "has_D") else None
    z = rest.pop(0) if _attr(node, "has_z") else None
    delta_bias = rest.pop(0) if _attr(node, "has_delta_bias") else None

    uf = b.op("Cast", [u], "u32", to=f32)
    dt = b.op("Cast", [delta], "dt32", to=f32)
    Bf = b.op("Cast", [B], "B32", to=f32)
    Cf = b.op("Cast", [C], "C32", to=f32)
    if delta_bias is not None:
        bias = b.op("Unsqueeze", [b.op("Cast", [delta_bias], to=f32), b.const([-1])], "bias")
        dt = b.op("Add", [dt, bias], "dt_biased")
    if _attr(node, "delta_softplus"):
        twenty = b.const(20.0, "twenty", np.float32)
        soft = b.op("Softplus", [b.op("Min", [dt, twenty])], "softplus")
        dt = b.op("Where", [b.op("Greater", [dt, twenty]), dt, soft], "delta")
    x = b.op("Mul", [dt, uf], "x")

    # Pad L to a multiple of T: pad = (T - L % T) % T.
    shape = b.op("Shape", [uf])
    length = b.op("Gather", [shape, b.const(2)], "L", axis=0)
    Tc = b.const(T, "T")
    pad = b.op("Mod", [b.op("Sub", [Tc, b.op("Mod", [length, Tc])]), Tc], "pad")
    zero1 = b.const([0])
    pads3 = b.op("Concat", [zero1, zero1, zero1, zero1, zero1, b.op("Unsqueeze", [pad, b.const([0])])], "pads3", axis=0)
    pads4 = b.op("Concat", [zero1, zero1, zero1, zero1, zero1, zero1, zero1, b.op("Unsqueeze", [pad, b.const([0])])],
                 "pads4", axis=0)
    dt_p = b.op("Pad", [dt, pads3], "dt_pad")
    x_p = b.op("Pad", [x, pads3], "x_pad")
    B_p = b.op("Pad", [Bf, pads4], "B_pad")
    C_p = b.op("Pad", [Cf, pads4], "C_pad")

    # (batch, groups, per_group, chunks, T) and (batch, groups, N, chunks, T).
    dt_c = b.op("Reshape", [dt_p, b.const([0, groups, per_group, -1, T])], "dt_c")
    x_c = b.op("Reshape", [x_p, b.const([0, groups, per_group, -1, T])], "x_c")
    B_c = b.op("Reshape", [B_p, b.const([0, groups, nstate, -1, T])], "B_c")
    C_c = b.op("Reshape", [C_p, b.const([0, groups, nstate, -1, T])], "C_c")
    A5 = b.op("Reshape", [b.op("Cast", [A], to=f32), b.const([1, groups, per_group, nstate, 1])], "A5")

    # Zero state (batch, groups, per_group, N, chunks) shaped by broadcasting.
    dt_first = b.op("Gather", [dt_c, b.const(0)], "dt_first", axis=4)  # (b, g, p, c)
    h0 = b.op("Mul", [b.op("Unsqueeze", [dt_first, b.const([3])]), b.const(np.zeros((1, groups, per_group, nstate, 1)), "zeros", np.float32)], "h0")

    # Step 2: scan over the T steps of every chunk from a zero state.
    s = _Builder(prefix + "/local")
    h, dt_t, x_t, B_t, C_t, h_out, y_out = (f"{prefix}/local/{n}" for n in ("h", "dt_t", "x_t", "B_t", "C_t", "h_out", "y_out"))
    dA = s.op("Exp", [s.op("Mul", [s.op("Unsqueeze", [dt_t, s.const([3])]), A5])], "dA")
    h_new = s.op("Add", [s.op("Mul", [dA, h]), s.op("Mul", [s.op("Unsqueeze", [x_t, s.const([3])]), s.op("Unsqueeze", [B_t, s.const([2])])])], "h_new")
    y_t = s.op("ReduceSum", [s.op("Mul", [h_new, s.op("Unsqueeze", [C_t, s.const([2])])]), s.const([3])], "y_t", keepdims=0)
    s.nodes.append(helper.make_node("Identity", [h_new], [h_out]))
    s.nodes.append(helper.make_node("Identity", [y_t], [y_out]))
    body = _body_graph("local_scan", s.nodes, [h, dt_t, x_t, B_t, C_t], [h_out, y_out])
    body.initializer.extend(s.initializers)
    h_end, y_local = b.op("Scan", [h0, dt_c, x_c, B_c, C_c], "local", n_out=2, body=body, num_scan_inputs=4,
                          scan_input_axes=[4, 4, 4, 4], scan_output_axes=[4])

    # Step 3: carry the state across chunks.
    cum = b.op("CumSum", [dt_c, b.const(4)], "cum")  # (b, g, p, c, T)
    total = b.op("Gather", [cum, b.const(T - 1)], "total", axis=4)  # (b, g, p, c)
    chunk_decay = b.op("Exp", [b.op("Mul", [b.op("Unsqueeze", [total, b.const([3])]), A5])], "chunk_decay")  # (b,g,p,N,c)
    carry0 = b.op("Gather", [h0, b.const(0)], "carry0", axis=4)  # zeros (b, g, p, N)
    s = _Builder(prefix + "/carry")
    carry, decay_c, h_end_c, carry_out, h_in_out = (f"{prefix}/carry/{n}" for n in ("carry", "decay_c", "h_end_c", "carry_out", "h_in_out"))
    s.nodes.append(helper.make_node("Identity", [carry], [h_in_out]))
    s.nodes.append(helper.make_node("Add", [s.op("Mul", [decay_c, carry]), h_end_c], [carry_out]))
    body = _body_graph("carry_scan", s.nodes, [carry, decay_c, h_end_c], [carry_out, h_in_out])
    _, h_in = b.op("Scan", [carry0, chunk_decay, h_end], "carry", n_out=2, body=body, num_scan_inputs=2,
                   scan_input_axes=[4, 4], scan_output_axes=[4])

    # Step 4: add each chunk's incoming state, decayed to every step.
    s = _Builder(prefix + "/correct")
    cum_t, Cc_t, yc_out = (f"{prefix}/correct/{n}" for n in ("cum_t", "Cc_t", "yc_out"))
    decay = s.op("Exp", [s.op("Mul", [s.op("Unsqueeze", [cum_t, s.const([3])]), A5])], "decay")
    yc = s.op("ReduceSum", [s.op("Mul", [s.op("Mul", [decay, h_in]), s.op("Unsqueeze", [Cc_t, s.const([2])])]), s.const([3])], keepdims=0)
    s.nodes.append(helper.make_node("Identity", [yc], [yc_out]))
    body = _body_graph("correct_scan", s.nodes, [cum_t, Cc_t], [yc_out])
    body.initializer.extend(s.initializers)
    y_corr = b.op("Scan", [cum, C_c], "correct", body=body, num_scan_inputs=2, scan_input_axes=[4, 4], scan_output_axes=[4])

    y = b.op("Add", [y_local, y_corr], "y_chunks")  # (b, g, p, c, T)
    y = b.op("Reshape", [y, b.const([0, dim, -1])], "y_padded")
    y = b.op("Slice", [y, b.const([0]), b.op("Unsqueeze", [length, b.const([0])]), b.const([2])], "y")
    if D is not None:
        y = b.op("Add", [y, b.op("Mul", [b.op("Unsqueeze", [b.op("Cast", [D], to=f32), b.const([-1])]), uf])], "y_D")
    if z is not None:
        zf = b.op("Cast", [z], "z32", to=f32)
        y = b.op("Mul", [y, b.op("Mul", [zf, b.op("Sigmoid", [zf])])], "y_gated")
    b.nodes.append(helper.make_node("Cast", [y], [node.output[0]], name=b.name("Cast"), to=out_dtype))
    return b


def lower_selective_scan(model: onnx.ModelProto, chunk: int = DEFAULT_CHUNK) -> onnx.ModelProto:
    """Return a copy of ``model`` with every SelectiveScan node replaced by standard ops."""
    model_copy = onnx.ModelProto()
    model_copy.CopyFrom(model)
    inferred = onnx.shape_inference.infer_shapes(model_copy)
    dtypes = {vi.name: vi.type.tensor_type.elem_type
              for vi in itertools.chain(inferred.graph.value_info, inferred.graph.input, inferred.graph.output)}
    for init in inferred.graph.initializer:
        dtypes[init.name] = init.data_type
    new_nodes, new_inits = [], []
    for i, node in enumerate(model_copy.graph.node):
        if node.op_type != OP_TYPE:
            new_nodes.append(node)
            continue
        a_shape = _value_shape(inferred, node.input[1 + 1])  # A: (dim, N)
        b_shape = _value_shape(inferred, node.input[3])  # B: (batch, groups, N, L)
        if None in a_shape or b_shape[1] is None:
            raise ValueError(f"portable lowering: node {node.name}: A {a_shape} and groups {b_shape} must be static")
        out_dtype = dtypes.get(node.input[0], TensorProto.FLOAT)
        built = _lower_node(node, (a_shape[0], a_shape[1], b_shape[1]), out_dtype, chunk, f"scan{i}")
        new_nodes.extend(built.nodes)
        new_inits.extend(built.initializers)
    del model_copy.graph.node[:]
    model_copy.graph.node.extend(new_nodes)
    model_copy.graph.initializer.extend(new_inits)
    kept = [op for op in model_copy.opset_import if op.domain != "trt.plugins"]
    del model_copy.opset_import[:]
    model_copy.opset_import.extend(kept)
    return model_copy
