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


def read_metadata(path_or_model) -> dict:
    """The avssm metadata stored in an exported file ({} when it has none)."""
    for prop in _model(path_or_model).metadata_props:
        if prop.key == KEY:
            return json.loads(prop.value)
    return {}


def require_metadata(path_or_model, source=None) -> dict:
    """The metadata, or the one-line error for a file that has none (``source`` names it)."""
    meta = read_metadata(path_or_model)
    name = source if source is not None else path_or_model
    if not meta:
        raise MetadataError(f"model {name}: has no avssm metadata (export it with `avssm export`)")
    missing = [f for f in ("model", "task", "input", "scan_op", "precision") if f not in meta]
    if missing:
        raise MetadataError(f"model {name}: its avssm metadata lacks {', '.join(missing)}; export it again")
    return meta


def write_metadata(model: onnx.ModelProto, meta: dict, **changes) -> None:
    """Store ``meta`` updated with ``changes`` as ``model``'s avssm metadata (replacing what was there)."""
    for prop in [p for p in model.metadata_props if p.key == KEY]:
        model.metadata_props.remove(prop)
    model.metadata_props.add(key=KEY, value=json.dumps(dict(meta, **changes)))
