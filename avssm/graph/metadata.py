"""The avssm metadata an exported ONNX file carries: one schema, written, read and checked here.

    meta = make_metadata("vmamba_nano_det", class_names=("car", ...), pad_to=32, input_size=(1080, 1920))
    write_metadata(model_proto, meta)          # the "avssm" metadata property, JSON
    meta = require_metadata("det.onnx")        # the one error for a file without it

Fields: avssm version, model, task, class_names, input (normalization: what the runtime's
preprocessing does), padding, outputs, scan_op, precision, opset, dynamic, export_size (HxW), weights (the
checkpoint's file name, "random", or None when unknown) and, for INT8 files, calibration.
"""
from __future__ import annotations

import json
import math

import onnx

from avssm.errors import AvssmError

KEY = "avssm"
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
# The normalization every avssm model was trained with: uint8 BGR frame -> RGB, x / 255, (x - mean) / std.
DEFAULT_INPUT = {"name": "images", "layout": "NCHW", "color": "RGB", "scale": 1 / 255,
                 "mean": list(IMAGENET_MEAN_RGB), "std": list(IMAGENET_STD_RGB)}


class MetadataError(AvssmError):
    pass


def make_metadata(model: str, *, class_names=None, pad_to: int | None = None, input_meta: dict | None = None,
                  input_size=(0, 0), scan_op: str = "plugin", precision: str = "fp32", opset: int = 17,
                  dynamic: bool = False, weights: str | None = None) -> dict:
    """The metadata of a file exported from ``model``: a detector when ``class_names`` is given;
    ``input_meta`` is the model's normalization (default DEFAULT_INPUT)."""
    import avssm

    detector = class_names is not None
    return {
        "avssm_version": avssm.__version__,
        "model": model,
        "task": "detection" if detector else "classification",
        "class_names": list(class_names) if detector else None,
        "input": {**(input_meta or DEFAULT_INPUT), "dtype": "float16" if precision == "fp16" else "float32"},
        # The detector pads bottom/right with zeros (after normalization) inside the graph, so any frame
        # size is accepted and boxes come back in the frame's pixels.
        "padding": {"multiple": pad_to, "where": "bottom_right", "inside_model": True} if detector else None,
        "outputs": ({"boxes": "xyxy input pixels, fp32, before NMS", "scores": "per class in [0, 1], before NMS"}
                    if detector else {"logits": "class logits"}),
        "scan_op": scan_op,
        "precision": precision,
        "opset": opset,
        "dynamic": dynamic,
        "export_size": list(input_size),
        "weights": weights,
    }


def _model(path_or_model) -> onnx.ModelProto:
    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    return onnx.load(str(path_or_model), load_external_data=False)


def read_metadata(path_or_model, source=None) -> dict:
    """The avssm metadata stored in an exported file ({} when it has none); MetadataError when it is not a JSON
    object."""
    for prop in _model(path_or_model).metadata_props:
        if prop.key == KEY:
            try:
                meta = json.loads(prop.value)
            except ValueError:
                meta = None
            if not isinstance(meta, dict):
                name = source if source is not None else path_or_model
                raise MetadataError(f"model {name}: its avssm metadata is not a JSON object; export it again")
            return meta
    return {}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def metadata_problem(meta: dict) -> str | None:
    """What is wrong with the fields the runtime reads (their types and ranges), or None."""
    missing = [f for f in ("model", "task", "input", "scan_op", "precision") if f not in meta]
    if missing:
        return f"lacks {', '.join(missing)}"
    for field in ("model", "task", "precision"):
        if not isinstance(meta[field], str):
            return f"'{field}' is {json.dumps(meta[field])[:40]}, not a string"
    if meta["scan_op"] not in ("plugin", "portable"):
        return f"'scan_op' is {json.dumps(meta['scan_op'])[:40]}, not plugin or portable"
    names = meta.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        return f"'class_names' is {json.dumps(names)[:40]}, not a list of names"
    inp = meta["input"]
    if not isinstance(inp, dict):
        return f"'input' is {json.dumps(inp)[:40]}, not an object"
    for field in ("mean", "std"):
        value = inp.get(field, DEFAULT_INPUT[field])
        if not (isinstance(value, list) and len(value) == 3 and all(_is_number(v) for v in value)):
            return f"'input.{field}' is {json.dumps(value)[:40]}, not three numbers"
    if any(v == 0 for v in inp.get("std", DEFAULT_INPUT["std"])):
        return "'input.std' has a zero"
    if not _is_number(inp.get("scale", DEFAULT_INPUT["scale"])):
        return f"'input.scale' is {json.dumps(inp.get('scale'))[:40]}, not a number"
    if inp.get("color", "RGB") not in ("RGB", "BGR"):
        return f"'input.color' is {json.dumps(inp.get('color'))[:40]}, not RGB or BGR"
    return None


def require_metadata(path_or_model, source=None) -> dict:
    """The metadata, or the one-line error for a file that has none or whose fields are not what the runtime
    reads (``source`` names it)."""
    name = source if source is not None else path_or_model
    meta = read_metadata(path_or_model, source=name)
    if not meta:
        raise MetadataError(f"model {name}: has no avssm metadata (export it with `avssm export`)")
    problem = metadata_problem(meta)
    if problem:
        raise MetadataError(f"model {name}: its avssm metadata {problem}; export it again")
    return meta


def write_metadata(model: onnx.ModelProto, meta: dict, **changes) -> None:
    """Store ``meta`` updated with ``changes`` as ``model``'s avssm metadata (replacing what was there)."""
    for prop in [p for p in model.metadata_props if p.key == KEY]:
        model.metadata_props.remove(prop)
    model.metadata_props.add(key=KEY, value=json.dumps(dict(meta, **changes)))
