"""`avssm calib` as a library call: frames -> INT8 Q/DQ file -> fidelity report on held-out frames."""
from __future__ import annotations

from pathlib import Path

from avssm.calib.frames import fidelity, read_frames
from avssm.calib.options import DEFAULT_KEEP, DEFAULT_OP_TYPES, CalibOptions
from avssm.calib.quantize import CalibrationError, portable_twin_path, quantize_int8


def calibrate(model: str, data: str, output: str, *, frames: int = CalibOptions.frames,
              holdout: int = CalibOptions.holdout, min_frames: int = CalibOptions.min_frames,
              method: str = CalibOptions.method, op_types=DEFAULT_OP_TYPES, keep=DEFAULT_KEEP,
              resize: tuple[int, int] | None = None, progress=None, warn=None) -> dict:
    """Calibrate ``model`` on the first ``frames`` frames of ``data``, write ``output`` and return the report.

    The report compares the INT8 file with the fp32 one on the next ``holdout`` frames of ``data`` (never
    used for calibration): per output max abs error, SQNR and cosine similarity. ``resize`` is (H, W).
    Unreadable images are skipped (``warn`` is told once each) and counted in ``frames_unreadable``.
    """
    from avssm.outputs import check_output

    step = progress or (lambda message: None)
    if not Path(model).is_file():
        raise CalibrationError(f"model {model}: no such file")
    output = Path(output)
    check_output(output, "--output", inputs={"MODEL": model})
    check_output(portable_twin_path(output), "--output's portable twin", inputs={"MODEL": model})
    from avssm.graph.onnx_io import read_onnx_input

    meta, _, fixed, dtype = read_onnx_input(Path(model))
    warned: set[str] = set()

    def skipped(message: str) -> None:
        if message not in warned:
            warned.add(message)
            (warn or (lambda m: None))(message)

    source = dict(input_meta=meta.get("input", {}), fixed=fixed, dtype=dtype, resize=resize, warn=skipped)
    step(f"reading up to {frames} calibration frames from {data}")
    calib = read_frames(data, frames, **source)
    if len(calib) < min_frames:
        raise CalibrationError(f"calibration data {data}: {len(calib)} readable frames, need at least {min_frames} "
                               f"(--min-frames)")
    held_out = read_frames(data, holdout, skip=len(calib), **source) if holdout else []
    step(f"calibrating ({method}) on {len(calib)} frames")
    result = quantize_int8(model, calib, output, method=method, op_types=op_types, keep=keep, progress=step)
    report = {"model": str(model), "output": result.output, "form": result.form, "method": method,
              "calibration_frames": len(calib), "heldout_frames": len(held_out),
              "frames_unreadable": sum(1 for m in warned if m.endswith("; skipped")), "warnings": sorted(warned),
              "quantized_nodes": len(result.quantized_nodes), "kept_nodes": result.kept_nodes,
              "portable_twin": result.portable_twin, "op_types": list(op_types), "keep": list(keep), "outputs": {}}
    if held_out:
        step(f"comparing with fp32 on {len(held_out)} held-out frames")
        report["outputs"] = fidelity(model, result.output, held_out)  # plugin forms too (runtime backends)
    return report
