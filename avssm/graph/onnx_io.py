"""Opening exported files: their inputs (name, fixed size, dtype) and avssm's ONNX Runtime session options."""
from __future__ import annotations

from pathlib import Path

from avssm.graph.metadata import MetadataError, require_metadata
from avssm.graph.scan_node import check_scan_nodes


def load_model(path: str | Path, external_data: bool = True):
    """onnx.load, with any failure (not ONNX, external data missing or outside the model's folder) as one line
    naming the file."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=external_data)
    except Exception as e:  # noqa: BLE001 - any parse failure means the same to the user
        if not external_data or "external" not in str(e).lower() and type(e).__name__ != "ValidationError":
            raise MetadataError(f"model {path}: not a readable ONNX file ({type(e).__name__})") from None
        detail = " ".join(str(e).split())[:300]
        raise MetadataError(f"model {path}: its external data cannot be read ({detail})") from None


def require_valid_scan_nodes(model, source) -> None:
    """check_scan_nodes as the one-line error naming the file: a malformed SelectiveScan node is refused before any
    implementation (ONNX Runtime's op, TensorRT's plugin) is handed it."""
    try:
        check_scan_nodes(model)
    except ValueError as e:
        raise MetadataError(f"model {source}: {e}") from None


def read_onnx_input(path: str | Path, model=None) -> tuple[dict, str, tuple | None, type]:
    """(avssm metadata, input name, fixed (H, W) or None, input numpy dtype) of an exported file (``model``: the
    file already loaded without its external data)."""
    import onnx

    model = model if model is not None else load_model(path, external_data=False)
    meta = require_metadata(model, source=path)
    require_valid_scan_nodes(model, path)
    if not model.graph.input:
        raise MetadataError(f"model {path}: the graph has no input; re-export the model")
    inp = model.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    hw = tuple(d.dim_value for d in dims[2:4])
    fixed = hw if len(dims) == 4 and all(v > 0 for v in hw) and not any(d.dim_param for d in dims[2:4]) else None
    dtype = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type).type
    return meta, inp.name, fixed, dtype


def input_specs(model) -> list[tuple[str, tuple, type]]:
    """(name, shape with None where a dimension is symbolic, numpy dtype) of each input of an ONNX ModelProto, as
    a runtime Backend's ``input_specs`` gives them, without opening a session."""
    import onnx

    specs = []
    for inp in model.graph.input:
        t = inp.type.tensor_type
        shape = tuple(d.dim_value if d.dim_value > 0 and not d.dim_param else None for d in t.shape.dim)
        specs.append((inp.name, shape, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).type))
    return specs


def session_options():
    """Options for every ONNX Runtime session avssm makes: no memory pattern. The pattern allocates a second
    block for a run's intermediates on the second run of a shape, beside what the arena kept from the first,
    so peak memory nearly doubles and the frame after the warm-up pays its page faults; steady-state time is
    the same without it (the measurements are in the commit message that introduced this)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_mem_pattern = False
    return options
