"""`avssm calib` as a library call: frames -> INT8 Q/DQ file -> fidelity report on held-out frames."""
from __future__ import annotations

from pathlib import Path

from avssm.calib.frames import fidelity, read_frames, read_samples, sample_files
from avssm.calib.options import DEFAULT_KEEP, DEFAULT_OP_TYPES, CalibOptions
from avssm.calib.quantize import CalibrationError, portable_twin_path, quantize_int8


def calibrate(model: str, data: str, output: str, *, frames: int = CalibOptions.frames,
              holdout: int = CalibOptions.holdout, min_frames: int = CalibOptions.min_frames,
              method: str = CalibOptions.method, op_types=DEFAULT_OP_TYPES, keep=DEFAULT_KEEP,
              resize: tuple[int, int] | None = None, progress=None, warn=None) -> dict:
    """Calibrate ``model`` on the first ``frames`` frames of ``data``, write ``output`` and return the report.

    ``data`` is what `avssm run --source` takes, for a model that takes images, or, for any model, a folder of
    .npz files, one sample each with an array per input (:func:`avssm.calib.frames.read_samples`). The report
    compares the INT8 file with the fp32 one on the next ``holdout`` frames of ``data`` (never used for
    calibration): per output max abs error, SQNR and cosine similarity. ``resize`` is (H, W).
    Unreadable images are skipped (``warn`` is told once each) and counted in ``frames_unreadable``.
    """
    from avssm.outputs import check_output

    step = progress or (lambda message: None)
    if not Path(model).is_file():
        raise CalibrationError(f"model {model}: no such file")
    output = Path(output)
    check_output(output, "--output", inputs={"MODEL": model})
    check_output(portable_twin_path(output), "--output's portable twin", inputs={"MODEL": model})
    from avssm.graph.onnx_io import input_specs, load_model, read_onnx_input
    from avssm.runtime.raw import describe_inputs, frame_normalization, takes_frames

    graph = load_model(model, external_data=False)  # read once: its metadata and first input, and every input
    meta, _, fixed, dtype = read_onnx_input(Path(model), graph)
    specs = input_specs(graph)
    warned: set[str] = set()

    def skipped(message: str) -> None:
        if message not in warned:
            warned.add(message)
            (warn or (lambda m: None))(message)

    files = sample_files(data)
    if files is not None:  # a model of your own: its inputs as .npz samples (any model takes them)
        def read(count, skip=0):
            return read_samples(files, count, specs, skip=skip, warn=skipped)
    elif takes_frames(specs):
        source = dict(input_meta=frame_normalization(meta), fixed=fixed, dtype=dtype, resize=resize, warn=skipped)

        def read(count, skip=0):
            return read_frames(data, count, skip=skip, **source)
    else:
        raise CalibrationError(f"calibration data {data}: model {model} takes {describe_inputs(specs)}, not camera "
                               "frames; give --data a folder of .npz files, one sample each with an array per input "
                               "(numpy.savez)")
    unit = "samples" if files else "frames"
    step(f"reading up to {frames} calibration {unit} from {data}")
    calib = read(frames)
    if len(calib) < min_frames:
        raise CalibrationError(f"calibration data {data}: {len(calib)} readable {unit}, need at least {min_frames} "
                               f"(--min-frames)")
    held_out = read(holdout, skip=len(calib)) if holdout else []
    step(f"calibrating ({method}) on {len(calib)} {unit}")
    result = quantize_int8(model, calib, output, method=method, op_types=op_types, keep=keep, progress=step)
    report = {"model": str(model), "output": result.output, "form": result.form, "method": method, "data": unit,
              "calibration_frames": len(calib), "heldout_frames": len(held_out),
              "frames_unreadable": sum(1 for m in warned if m.endswith("; skipped")), "warnings": sorted(warned),
              "quantized_nodes": len(result.quantized_nodes), "kept_nodes": result.kept_nodes,
              "portable_twin": result.portable_twin, "op_types": list(op_types), "keep": list(keep), "outputs": {}}
    if held_out:
        step(f"comparing with fp32 on {len(held_out)} held-out {unit}")
        report["outputs"] = fidelity(model, result.output, held_out)  # plugin forms too (runtime backends)
    return report
