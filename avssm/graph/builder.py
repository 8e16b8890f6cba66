"""Writing ONNX subgraphs: nodes with unique names under a prefix, and their constant initializers."""
from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import helper, numpy_helper


class GraphBuilder:
    """Appends nodes with unique names to a list."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._ids = itertools.count()

    def name(self, hint: str) -> str:
        return f"{self.prefix}/{hint}_{next(self._ids)}"

    def op(self, op_type: str, inputs: list[str], hint: str = "", n_out: int = 1, out: str | None = None,
           **attrs) -> str | list[str]:
        """``out`` names the (single) output, e.g. a loop body's declared output."""
        outputs = [out] if out else [self.name(hint or op_type) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=self.name(op_type), **attrs))
        return outputs[0] if n_out == 1 else outputs

    def const(self, value, hint: str = "const", dtype=np.int64) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name
