"""The avssm metadata an exported ONNX file carries (model, classes, normalization, padding, precision).

Torch-free: the runtime and `avssm build` read it on machines without PyTorch.
"""
from __future__ import annotations

import json

import onnx


def read_metadata(path_or_model) -> dict:
    """The avssm metadata stored in an exported file ({} when it has none)."""
    model = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(str(path_or_model), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == "avssm":
            return json.loads(prop.value)
    return {}
