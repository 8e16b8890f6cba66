"""Lower every ``SelectiveScan`` node to standard ONNX ops (the portable form).

The lowering is a chunked scan written as an ONNX graph:

1. the sequence is padded to a multiple of ``chunk`` tokens (padding has delta 0, so it changes nothing)
   and cut into chunks;
2. a ``Scan`` over the ``chunk`` steps runs every chunk from a zero state at once, giving each chunk's
   end state;
3. a ``Scan`` over the chunks carries the state across chunk boundaries (decay = exp(A * sum of the
   chunk's deltas)), giving the state that enters each chunk;
4. a second ``Scan`` over the steps runs every chunk again from the state that enters it, now writing
   the output.

Step 4 repeats step 2's recurrence rather than correcting a zero-state output afterwards: the correction
(exp(A * cumulative delta) applied to the incoming state, then read out) costs as many ops per step,
and the rerun needs no final addition. With N = 1 (VMamba v2) the per-step decays and inputs are as
small as delta itself, so both passes read them precomputed and each step is a multiply and an add.

Every exponent is A times a sum of non-negative deltas, so nothing overflows for any L; softplus is
log(1 + exp(x)) in a form that cannot overflow. Math and state are fp32 whatever the node's dtype; the
output is cast back to u's dtype.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from avssm.graph.builder import GraphBuilder
from avssm.graph.scan_node import (DIRECTIONS, DOMAIN, LAYOUT_CROSS_2D, LAYOUT_SEQUENCE, attribute, chunk_size,
                                   is_scan_node, layout, node_inputs, value_shape, value_type)
from avssm.graph.unfuse import fused_dim, unfuse_node

DEFAULT_CHUNK = 64


def _body_graph(name, nodes, inputs, outputs) -> onnx.GraphProto:
    f32 = TensorProto.FLOAT
    return helper.make_graph(nodes, name, [helper.make_tensor_value_info(i, f32, None) for i in inputs],
                             [helper.make_tensor_value_info(o, f32, None) for o in outputs])


def _lower_node(node: onnx.NodeProto, dims: tuple[int, int, int], out_dtype: int, chunk: int, prefix: str) -> GraphBuilder:
    dim, nstate, groups = dims
    per_group = dim // groups
    T = chunk
    b = GraphBuilder(prefix)
    f32 = TensorProto.FLOAT
    u, delta, A, B, C, D, z, delta_bias = node_inputs(node)

    uf = b.op("Cast", [u], "u32", to=f32)
    dt = b.op("Cast", [delta], "dt32", to=f32)
    Bf = b.op("Cast", [B], "B32", to=f32)
    Cf = b.op("Cast", [C], "C32", to=f32)
    if delta_bias is not None:
        bias = b.op("Unsqueeze", [b.op("Cast", [delta_bias], to=f32), b.const([-1])], "bias")
        dt = b.op("Add", [dt, bias], "dt_biased")
    if attribute(node, "delta_softplus"):
        # softplus(x) = relu(x) + log(1 + exp(-|x|)): no overflow at any x; for x > 20 it differs from
        # mamba_ssm's thresholded form by log(1 + e^-20) ~ 2e-9.
        tail = b.op("Log", [b.op("Add", [b.const(1.0, "one", np.float32), b.op("Exp", [b.op("Neg", [b.op("Abs", [dt])])])])])
        dt = b.op("Add", [b.op("Relu", [dt]), tail], "delta")
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

    # Step-major layout so every Scan iteration reads contiguous slices:
    # (T, batch, groups, per_group, chunks) and (T, batch, groups, N, chunks).
    def steps_first(name, inner, hint):
        chunked = b.op("Reshape", [name, b.const([0, groups, inner, -1, T])])
        return b.op("Transpose", [chunked], hint, perm=[4, 0, 1, 2, 3])

    dt_s = steps_first(dt_p, per_group, "dt_steps")
    x_s = steps_first(x_p, per_group, "x_steps")
    B_s = steps_first(B_p, nstate, "B_steps")
    C_s = steps_first(C_p, nstate, "C_steps")
    A_f = b.op("Cast", [A], to=f32)
    # States are (b, g, p, N, c); with N == 1 the N axis is dropped: states are (b, g, p, c) and
    # B/C slices (b, g, 1, c) broadcast over p as they are (no Unsqueeze/ReduceSum passes).
    has_n = nstate > 1
    A4 = b.op("Reshape", [A_f, b.const([1, 1, groups, per_group, nstate] if has_n else [1, 1, groups, per_group])], "A4")

    def per_channel(body: GraphBuilder, t: str) -> str:  # (b, g, N, c) -> broadcastable against a state
        return body.op("Unsqueeze", [t, body.const([2])]) if has_n else t

    # Zero states shaped by broadcasting: zeros (b, g, p, c) and h0 (state-shaped).
    zeros_bgpc = b.op("Mul", [b.op("Gather", [dt_s, b.const(0)], axis=0), b.const(0.0, "zero", np.float32)], "zeros_bgpc")
    h0 = zeros_bgpc
    if has_n:
        h0 = b.op("Mul", [b.op("Unsqueeze", [zeros_bgpc, b.const([3])]), b.const(np.zeros((1, groups, per_group, nstate, 1)), "zeros", np.float32)], "h0")

    # The step inputs of both passes, and how a body turns one step's slices into (decay, input) for the
    # state. N == 1: exp(delta * A) and x * B are state-sized, so they are computed once for all steps
    # here and each step only multiplies and adds. N > 1: they are N times larger than delta and x, so
    # each step computes its own from (delta, x, B).
    if has_n:
        A5 = b.op("Reshape", [A_f, b.const([1, groups, per_group, nstate, 1])], "A5")
        step_inputs = [dt_s, x_s, B_s]

        def decay_and_input(body: GraphBuilder, dt_t: str, x_t: str, B_t: str) -> tuple[str, str]:
            dA = body.op("Exp", [body.op("Mul", [body.op("Unsqueeze", [dt_t, body.const([3])]), A5])], "dA")
            return dA, body.op("Mul", [body.op("Unsqueeze", [x_t, body.const([3])]), per_channel(body, B_t)], "xB")
    else:
        A_steps = b.op("Reshape", [A_f, b.const([1, 1, groups, per_group, 1])], "A_steps")
        step_inputs = [b.op("Exp", [b.op("Mul", [dt_s, A_steps])], "dA_steps"), b.op("Mul", [x_s, B_s], "xB_steps")]

        def decay_and_input(body: GraphBuilder, dA_t: str, xB_t: str) -> tuple[str, str]:
            return dA_t, xB_t

    def scan_pass(hint: str, h_init: str, with_output: bool) -> str | list[str]:
        """A Scan over the T steps of every chunk at once: h = exp(delta * A) * h + x * B from ``h_init``;
        returns the end states and, ``with_output``, y (T, b, g, p, c)."""
        s = GraphBuilder(f"{prefix}/{hint}")
        h, h_out, y_out = (f"{prefix}/{hint}/{n}" for n in ("h", "h_out", "y_out"))
        step = [f"{prefix}/{hint}/in{i}" for i in range(len(step_inputs))]
        dA, xB = decay_and_input(s, *step)
        # The bodies' last ops write their declared outputs directly: an Identity there copies the whole
        # state every step (4% of a 1080p vim_tiny_det frame on ONNX Runtime CPU).
        h_new = s.op("Add", [s.op("Mul", [dA, h]), xB], out=h_out)
        inputs, outputs, scanned = [h] + step, [h_out], list(step_inputs)
        if with_output:
            C_t = f"{prefix}/{hint}/C_t"
            if has_n:  # sum over N of states * C
                s.op("ReduceSum", [s.op("Mul", [h_new, per_channel(s, C_t)]), s.const([3])], keepdims=0, out=y_out)
            else:
                s.op("Mul", [h_new, C_t], out=y_out)
            inputs, outputs, scanned = inputs + [C_t], outputs + [y_out], scanned + [C_s]
        body = _body_graph(f"{hint}_scan", s.nodes, inputs, outputs)
        body.initializer.extend(s.initializers)
        return b.op("Scan", [h_init] + scanned, hint, n_out=len(outputs), body=body, num_scan_inputs=len(scanned))

    # Step 2: every chunk's end state from a zero state.
    h_end = scan_pass("ends", h0, with_output=False)

    # Step 3: carry the state across chunk boundaries, chunk-major: (c, b, g, p[, N]).
    total = b.op("ReduceSum", [dt_s, b.const([0])], "total", keepdims=0)  # (b, g, p, c)
    total_c = b.op("Transpose", [total], "total_c", perm=[3, 0, 1, 2])  # (c, b, g, p)
    if has_n:
        total_c = b.op("Unsqueeze", [total_c, b.const([4])])
    chunk_decay = b.op("Exp", [b.op("Mul", [total_c, A4])], "chunk_decay")
    last = 4 if has_n else 3
    h_end_c = b.op("Transpose", [h_end], "h_end_c", perm=[last] + list(range(last)))
    carry0 = b.op("Gather", [h0, b.const(0)], "carry0", axis=last)  # zeros
    s = GraphBuilder(prefix + "/carry")
    carry, decay_c, end_c, carry_out, h_in_out = (f"{prefix}/carry/{n}" for n in ("carry", "decay_c", "end_c", "carry_out", "h_in_out"))
    s.nodes.append(helper.make_node("Identity", [carry], [h_in_out]))
    s.nodes.append(helper.make_node("Add", [s.op("Mul", [decay_c, carry]), end_c], [carry_out]))
    body = _body_graph("carry_scan", s.nodes, [carry, decay_c, end_c], [carry_out, h_in_out])
    _, h_in_c = b.op("Scan", [carry0, chunk_decay, h_end_c], "carry", n_out=2, body=body, num_scan_inputs=2)
    h_in = b.op("Transpose", [h_in_c], "h_in", perm=list(range(1, last + 1)) + [0])  # state entering each chunk

    # Step 4: every chunk again, from the state that enters it, now with its output.
    _, y = scan_pass("outputs", h_in, with_output=True)  # (T, b, g, p, c)

    y = b.op("Transpose", [y], "y_chunks", perm=[1, 2, 3, 4, 0])  # (b, g, p, c, T)
    y = b.op("Reshape", [y, b.const([0, dim, -1])], "y_padded")
    y = b.op("Slice", [y, b.const([0]), b.op("Unsqueeze", [length, b.const([0])]), b.const([2])], "y")
    if D is not None:
        y = b.op("Add", [y, b.op("Mul", [b.op("Unsqueeze", [b.op("Cast", [D], to=f32), b.const([-1])]), uf])], "y_D")
    if z is not None:
        zf = b.op("Cast", [z], "z32", to=f32)
        y = b.op("Mul", [y, b.op("Mul", [zf, b.op("Sigmoid", [zf])])], "y_gated")
    b.nodes.append(helper.make_node("Cast", [y], [node.output[0]], name=b.name("Cast"), to=out_dtype))
    return b


def lower_selective_scan(model: onnx.ModelProto, chunk: int | None = None, lengths: list[int] | None = None,
                         groups: list[int | None] | None = None) -> onnx.ModelProto:
    """Return a copy of ``model`` with every SelectiveScan node replaced by standard ops (a fused node: its
    traversal copies and merge, avssm.graph.unfuse, around the lowered scan).

    The chunk size of the i-th node is ``chunk`` if given, else sized for ``lengths[i]`` (the sequence
    lengths the model was exported at), else for its static L, else DEFAULT_CHUNK. The groups of B and C must
    be static: from shape inference, else ``groups[i]`` (the exporter records them).
    """
    model_copy = onnx.ModelProto()
    model_copy.CopyFrom(model)
    inferred = onnx.shape_inference.infer_shapes(model_copy)
    new_nodes, new_inits = [], []
    scan_index = 0
    for i, node in enumerate(model_copy.graph.node):
        if not is_scan_node(node):
            new_nodes.append(node)
            continue
        kind = layout(node)
        a_shape = value_shape(inferred, node.input[2])  # A: (dim, N)
        b_shape = value_shape(inferred, node.input[3])  # B: (batch, groups, N, L), or (..., H, W) in cross-2d
        if kind != LAYOUT_SEQUENCE:  # a fused layout fixes its groups: one per direction
            rank = 5 if kind == LAYOUT_CROSS_2D else 4
            b_shape = list(b_shape) if len(b_shape) == rank else [None] * rank
            b_shape[1] = DIRECTIONS[kind]
        if len(b_shape) > 1 and b_shape[1] is None and groups is not None and scan_index < len(groups):
            b_shape = [b_shape[0], groups[scan_index], *b_shape[2:]]
        if None in a_shape or len(b_shape) < 2 or b_shape[1] is None:
            raise ValueError(f"portable lowering: node {node.name}: A {a_shape} and groups {b_shape} must be static")
        out_dtype = value_type(inferred, node.input[0])
        size = chunk
        if size is None and lengths is not None and scan_index < len(lengths):
            size = chunk_size(lengths[scan_index])
        if size is None:
            length = np.prod(b_shape[3:]) if len(b_shape) > 3 and None not in b_shape[3:] else None
            size = chunk_size(int(length)) if length else DEFAULT_CHUNK
        scan_index += 1
        dims = (a_shape[0], a_shape[1], b_shape[1])
        if kind == LAYOUT_SEQUENCE:
            built = _lower_node(node, dims, out_dtype, size, f"scan{i}")
            new_nodes.extend(built.nodes)
            new_inits.extend(built.initializers)
            continue
        # A fused node: its copies, the version 1 node lowered with an fp32 output, the merge in fp32, one cast.
        part = unfuse_node(node, fused_dim(node, a_shape[0]), f"scan{i}/unfuse", out_dtype, out_cast=True)
        built = _lower_node(part.scan, dims, TensorProto.FLOAT, size, f"scan{i}")
        new_nodes.extend([*part.before, *built.nodes, *part.after])
        new_inits.extend([*part.initializers, *built.initializers])
    del model_copy.graph.node[:]
    model_copy.graph.node.extend(new_nodes)
    model_copy.graph.initializer.extend(new_inits)
    kept = [op for op in model_copy.opset_import if op.domain != DOMAIN]
    del model_copy.opset_import[:]
    model_copy.opset_import.extend(kept)
    return model_copy
