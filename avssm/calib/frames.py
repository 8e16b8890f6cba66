"""Calibration and held-out frames from real sources, through exactly the runtime's preprocessing."""
from __future__ import annotations

import numpy as np

from avssm.calib.quantize import CalibrationError


def read_frames(source: str, count: int, *, input_meta: dict, fixed: tuple[int, int] | None, dtype, skip: int = 0,
                resize: tuple[int, int] | None = None, warn=None) -> list[np.ndarray]:
    """Up to ``count`` preprocessed (1, 3, H, W) frames from ``source`` after skipping ``skip`` frames.

    ``source`` is what `avssm run --source` takes (video, image folder, image, stream) or a COCO JSON
    (the images it lists, in id order, from the images/ folder beside it). A model with a ``fixed`` (H, W)
    input needs frames of that size (or ``resize``, (H, W)). Unreadable images in a folder are skipped and
    ``warn`` is told.
    """
    from avssm.runtime.preprocess import check_frame_fits, preprocess

    def fit(image: np.ndarray) -> np.ndarray:
        import cv2

        if resize is not None and tuple(image.shape[:2]) != tuple(resize):
            image = cv2.resize(image, tuple(resize)[::-1], interpolation=cv2.INTER_AREA)
        check_frame_fits(fixed, image.shape, source)
        return preprocess(image, input_meta, dtype)

    if str(source).endswith(".json"):
        from pathlib import Path

        from avssm.datasets.coco import CocoDataset

        from avssm.datasets.coco import CocoError

        dataset = CocoDataset(source, Path(source).parent / "images")
        frames, seen = [], 0
        for i in range(len(dataset)):
            if len(frames) >= count:
                break
            try:
                image = dataset[i][0]
            except CocoError as e:  # an image listed but missing or unreadable
                (warn or (lambda m: None))(f"{e}; skipped")
                continue
            seen += 1
            if seen > skip:
                frames.append(fit(image))
        return frames

    from avssm.runtime.sources import FrameSource, SourceError

    frames: list[np.ndarray] = []
    try:
        with FrameSource(source, max_frames=skip + count, drop="none", warn=warn) as frames_in:
            seen = 0
            while (frame := frames_in.next()) is not None and len(frames) < count:
                seen += 1
                if seen > skip:
                    frames.append(fit(frame.image))
            if frames_in.error:  # a truncated file or a lost stream: what was read still counts
                if not frames:
                    raise CalibrationError(frames_in.error)
                (warn or (lambda m: None))(frames_in.error)
    except SourceError as e:
        raise CalibrationError(str(e)) from None
    return frames


def sample_files(source: str) -> list | None:
    """The .npz files of a calibration source of samples (a folder of them, in name order, or one file), or None
    when ``source`` is not one."""
    from pathlib import Path

    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".npz" and p.is_file())
        return files or None
    return [path] if path.suffix == ".npz" else None


def read_samples(files: list, count: int, specs: list[tuple[str, tuple, type]], *, skip: int = 0,
                 warn=None) -> list[dict[str, np.ndarray]]:
    """Up to ``count`` samples (a value of each input, by name) from ``files`` after skipping ``skip`` readable
    ones: .npz files
    with one array per input of the model, of the input's shape (any size where the input's is dynamic), as
    ``numpy.savez(path, x=..., y=...)`` writes them. A file that is not a readable .npz is skipped (``warn`` is
    told); one whose arrays do not fit the inputs is one line naming the file, the array and the shape to give.
    Each array's size is checked in the file's index before it is read, so no file costs more memory than the
    inputs it holds."""
    import zipfile

    samples, seen = [], 0
    for path in files:
        if len(samples) >= count:
            break
        try:
            with zipfile.ZipFile(path) as archive:
                sizes = {info.filename.removesuffix(".npy"): info.file_size for info in archive.infolist()}
        except (OSError, zipfile.BadZipFile) as e:
            (warn or (lambda m: None))(f"calibration sample {path}: not a readable .npz file ({type(e).__name__}); "
                                       "skipped")
            continue
        sample = {}
        for name, shape, dtype in specs:
            where = f"calibration sample {path}"
            want = "x".join("N" if d is None else str(d) for d in shape)
            if name not in sizes:
                raise CalibrationError(f"{where}: has no array {name}; save one per model input ({name}: {want}), "
                                       f"e.g. numpy.savez(path, {name}=...)")
            known = int(np.prod([d for d in shape if d is not None] or [1])) * np.dtype(np.float64).itemsize
            if all(d is not None for d in shape) and sizes[name] > known + 4096:  # the header is < 4 KiB
                raise CalibrationError(f"{where}: array {name} holds {sizes[name]} bytes, more than an input of "
                                       f"{want} can; give {name} the shape {want}")
            try:
                with np.load(path, allow_pickle=False) as data:
                    value = data[name]
            except (OSError, ValueError, zipfile.BadZipFile) as e:
                raise CalibrationError(f"{where}: array {name} cannot be read ({type(e).__name__}: "
                                       f"{' '.join(str(e).split())[:200]})") from None
            if value.ndim != len(shape) or any(d is not None and d != v for d, v in zip(shape, value.shape)):
                raise CalibrationError(f"{where}: array {name} has the shape {'x'.join(map(str, value.shape))}; "
                                       f"the model's input {name} takes {want}")
            if not (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_):
                raise CalibrationError(f"{where}: array {name} holds {value.dtype}, not numbers")
            sample[name] = value.astype(dtype)
        seen += 1
        if seen > skip:
            samples.append(sample)
    return samples


def fidelity(reference: str, candidate: str, frames: list) -> dict:
    """Per output, over ``frames`` (preprocessed frames, or samples: a value of each input by name): max abs
    error, SQNR (dB) and cosine similarity of ``candidate`` against ``reference`` (both files with avssm metadata,
    run on ONNX Runtime CPU as `avssm run` runs them)."""
    from avssm.runtime.backends import OnnxRuntimeBackend

    ref_be, cand_be = OnnxRuntimeBackend(reference), OnnxRuntimeBackend(candidate)

    def run(be, x):
        feeds = x if isinstance(x, dict) else {be.input_name: x}
        dtypes = {name: dtype for name, _, dtype in be.input_specs()}
        return be.run_inputs({name: value.astype(dtypes[name]) for name, value in feeds.items()})

    sums: dict[str, dict] = {}
    for x in frames:
        ref_out, cand_out = run(ref_be, x), run(cand_be, x)
        for n, r in ref_out.items():
            r, c = r.astype(np.float64).ravel(), cand_out[n].astype(np.float64).ravel()
            s = sums.setdefault(n, {"err2": 0.0, "ref2": 0.0, "dot": 0.0, "cand2": 0.0, "max_abs": 0.0})
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
