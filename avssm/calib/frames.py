"""Calibration and held-out frames from real sources, through exactly the runtime's preprocessing."""
from __future__ import annotations

import numpy as np

from avssm.calib.quantize import CalibrationError


def model_input(model_path: str) -> tuple[str, dict, tuple]:
    """(input name, avssm metadata, input shape with None for symbolic dims) of an exported file."""
    import onnx

    from avssm.runtime.metadata import read_metadata

    model = onnx.load(str(model_path), load_external_data=False)
    meta = read_metadata(model)
    if not meta:
        raise CalibrationError(f"{model_path}: no avssm metadata (export it with `avssm export`)")
    inp = model.graph.input[0]
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim)
    return inp.name, meta, shape


def read_frames(source: str, count: int, *, input_meta: dict, input_shape: tuple, skip: int = 0,
                resize: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Up to ``count`` preprocessed (1, 3, H, W) frames from ``source`` after skipping ``skip`` frames.

    ``source`` is what `avssm run --source` takes (video, image folder, image, stream) or a COCO JSON
    (its images, in id order). A model with a fixed input size needs frames of that size (or ``resize``).
    """
    from avssm.runtime.preprocess import preprocess

    images = _coco_images(source) if str(source).endswith(".json") else None
    frames: list[np.ndarray] = []
    if images is not None:
        import cv2

        for path in images[skip:skip + count]:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise CalibrationError(f"calibration image {path}: missing or not readable")
            frames.append(_fit(image, resize, input_shape, source, input_meta, preprocess))
        return frames

    from avssm.runtime.sources import FrameSource, SourceError

    try:
        with FrameSource(source, max_frames=skip + count, drop="none") as frames_in:
            seen = 0
            while (frame := frames_in.next()) is not None and len(frames) < count:
                seen += 1
                if seen > skip:
                    frames.append(_fit(frame.image, resize, input_shape, source, input_meta, preprocess))
            if frames_in.error:
                raise CalibrationError(frames_in.error)
    except SourceError as e:
        raise CalibrationError(str(e)) from None
    return frames


def _fit(image, resize, input_shape, source, input_meta, preprocess) -> np.ndarray:
    import cv2

    if resize is not None and (image.shape[1], image.shape[0]) != resize:
        image = cv2.resize(image, resize, interpolation=cv2.INTER_AREA)
    h, w = input_shape[2], input_shape[3]
    if (h is not None and h != image.shape[0]) or (w is not None and w != image.shape[1]):
        raise CalibrationError(f"calibration frames from {source} are {image.shape[0]}x{image.shape[1]} but the "
                               f"model's input is fixed at {h}x{w} (pass --resize {w}x{h} or export --dynamic)")
    dtype = np.float16 if input_meta.get("dtype") == "float16" else np.float32
    return preprocess(image, input_meta, dtype)


def _coco_images(path: str) -> list:
    from avssm.datasets.coco import CocoError, read_coco
    from pathlib import Path

    try:
        data = read_coco(path)
    except CocoError as e:
        raise CalibrationError(str(e)) from None
    images = sorted(data["images"], key=lambda i: i["id"])
    folder = Path(path).parent / "images"
    return [folder / i["file_name"] for i in images]


def fidelity(reference: str, candidate: str, frames: list[np.ndarray]) -> dict:
    """Per output, over ``frames``: max abs error, SQNR (dB) and cosine similarity of ``candidate`` against
    ``reference`` (both run on ONNX Runtime CPU, so both must be portable forms)."""
    import onnxruntime as ort

    def session(path):
        options = ort.SessionOptions()
        options.log_severity_level = 3
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    ref_s, cand_s = session(reference), session(candidate)
    names = [o.name for o in ref_s.get_outputs()]
    ref_in, cand_in = ref_s.get_inputs()[0], cand_s.get_inputs()[0]
    cand_dtype = np.float16 if cand_in.type == "tensor(float16)" else np.float32
    ref_dtype = np.float16 if ref_in.type == "tensor(float16)" else np.float32
    sums = {n: {"err2": 0.0, "ref2": 0.0, "dot": 0.0, "cand2": 0.0, "max_abs": 0.0} for n in names}
    for x in frames:
        ref_out = ref_s.run(names, {ref_in.name: x.astype(ref_dtype)})
        cand_out = cand_s.run(names, {cand_in.name: x.astype(cand_dtype)})
        for n, r, c in zip(names, ref_out, cand_out):
            r, c = r.astype(np.float64).ravel(), c.astype(np.float64).ravel()
            s = sums[n]
            s["err2"] += float(((r - c) ** 2).sum())
            s["ref2"] += float((r ** 2).sum())
            s["cand2"] += float((c ** 2).sum())
            s["dot"] += float((r * c).sum())
            s["max_abs"] = max(s["max_abs"], float(np.abs(r - c).max()) if r.size else 0.0)
    report = {}
    for n, s in sums.items():
        finite = np.isfinite([s["err2"], s["cand2"]]).all()
        sqnr = 10 * np.log10(s["ref2"] / s["err2"]) if s["err2"] > 0 else float("inf")
        cosine = s["dot"] / np.sqrt(s["ref2"] * s["cand2"]) if s["ref2"] > 0 and s["cand2"] > 0 else 1.0
        report[n] = {"max_abs_error": s["max_abs"], "sqnr_db": float(sqnr) if finite else float("nan"),
                     "cosine": float(cosine) if finite else float("nan")}
    return report
