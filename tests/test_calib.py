"""INT8 Q/DQ calibration (`avssm calib`): placement, plugin/portable agreement, fidelity, report, errors."""
import json
import re
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from avssm.calib import DEFAULT_KEEP, calibrate, qdq_placement
from avssm.datasets.roads import write_dataset

SIZE = (64, 96)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from avssm.export import export_onnx
    from avssm.models import create_model

    tmp = tmp_path_factory.mktemp("calib")
    torch.manual_seed(0)  # the same weights every run
    model = create_model("vmamba_nano_det", backbone_overrides=dict(depths=(1, 1, 2, 1), embed_dim=16)).eval()
    model.model_name = "vmamba_nano_det"
    files = {}
    for form in ("plugin", "portable"):
        files[form] = str(tmp / f"det.{form}.onnx")
        export_onnx(model, files[form], input_size=SIZE, scan_op=form)
    write_dataset(tmp / "frames", count=24, seed=5, height=SIZE[0], width=SIZE[1])
    return tmp, files, str(tmp / "frames" / "images")


@pytest.fixture(scope="module")
def quantized(exported):
    tmp, files, frames = exported
    reports = {form: calibrate(files[form], frames, str(tmp / f"det.{form}.int8.onnx"), frames=16, holdout=8,
                               method="minmax")
               for form in ("plugin", "portable")}
    return tmp, reports


def consumers_of_dq(model):
    dq = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return [n for n in model.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and any(i in dq for i in n.input)]


def test_qdq_on_convs_and_never_on_the_scan_or_sensitive_nodes(quantized, exported):
    tmp, reports = quantized
    portable = onnx.load(reports["portable"]["output"])
    consumers = consumers_of_dq(portable)
    assert sum(n.op_type == "Conv" for n in consumers) >= 20
    # ONNX Runtime hands the dequantized tensor to every consumer (Add, Reshape, ...); none is a sensitive op.
    assert not {n.op_type for n in consumers} & {"Scan", "Softplus", "Exp", "Einsum", "LayerNormalization"}
    weights = {t.name for t in portable.graph.initializer}
    for node in consumers:
        names = [node.name] + [i for i in node.input if i in weights]
        assert not any(re.search(p, name) for p in DEFAULT_KEEP for name in names), node.name
    kept = reports["portable"]["kept_nodes"]
    assert any("cls_logits" in k for k in kept) and any("box_pred" in k for k in kept)
    # VMamba's x_proj / dt_proj are MatMuls named after their module; their weights name them. 5 blocks, 2 each.
    fp32 = onnx.load(exported[1]["portable"])
    projections = [n.name for n in fp32.graph.node if n.op_type == "MatMul"
                   and any(re.search(r"(x_proj|dt_projs)_weight", i) for i in n.input)]
    assert len(projections) == 10 and set(projections) <= set(kept)
    plugin = onnx.load(reports["plugin"]["output"])
    scans = [n for n in plugin.graph.node if n.op_type == "SelectiveScan"]
    assert len(scans) == 5 and all(n.domain == "trt.plugins" for n in scans)  # depths 1+1+2+1
    assert not any(n.op_type == "SelectiveScan" for n in consumers_of_dq(plugin))
    assert json.loads({p.key: p.value for p in plugin.metadata_props}["avssm"])["precision"] == "int8"


def test_plugin_and_portable_int8_have_the_same_qdq_and_compute_the_same(quantized):
    tmp, reports = quantized
    plugin = onnx.load(reports["plugin"]["output"])
    twin = onnx.load(reports["plugin"]["portable_twin"])
    portable = onnx.load(reports["portable"]["output"])
    assert qdq_placement(plugin) == qdq_placement(twin) == qdq_placement(portable)
    scales = lambda m: {t.name: onnx.numpy_helper.to_array(t).tolist() for t in m.graph.initializer  # noqa: E731
                        if t.name.endswith("_scale")}
    a, b = scales(plugin), scales(portable)  # the same up to the two lowerings' rounding
    assert a.keys() == b.keys() and all(np.allclose(a[k], b[k], rtol=1e-3) for k in a)
    # The plugin graph (SelectiveScan run by the reference op) computes what its portable twin computes.
    from avssm.export.reference_op import reference_session

    for op in plugin.opset_import:  # onnx.reference implements DequantizeLinear from opset 19
        if op.domain in ("", "ai.onnx"):
            op.version = 21
    x = np.random.default_rng(0).standard_normal((1, 3, *SIZE)).astype(np.float32)
    ref = reference_session(plugin).run(None, {"images": x})
    # ONNX Runtime's extended optimizations fuse Q/DQ pairs into integer kernels that round differently (3% on
    # the scores with ONNX Runtime 1.32), so the twin runs with basic ones: Q/DQ computed as written, as the
    # reference does. A value on a rounding boundary before a QuantizeLinear may still move by one int8 step
    # between the two engines (seen: 1.5e-6 relative); a wrongly raised graph is off by O(1).
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    out = ort.InferenceSession(reports["plugin"]["portable_twin"], options,
                               providers=["CPUExecutionProvider"]).run(None, {"images": x})
    for a, b in zip(ref, out):
        assert np.linalg.norm(a - b) <= 1e-3 * np.linalg.norm(b)


def test_int8_portable_runs_on_onnxruntime_cpu_within_the_reports_bounds(quantized):
    tmp, reports = quantized
    report = reports["portable"]
    assert report["heldout_frames"] == 8 and report["calibration_frames"] == 16
    for name in ("boxes", "scores"):
        r = report["outputs"][name]
        assert r["sqnr_db"] > 25 and r["cosine"] > 0.995 and np.isfinite(r["max_abs_error"])
    assert set(report) >= {"model", "output", "form", "method", "calibration_frames", "heldout_frames",
                           "frames_unreadable", "quantized_nodes", "kept_nodes", "op_types", "keep", "outputs"}
    assert set(report["outputs"]["scores"]) == {"max_abs_error", "sqnr_db", "cosine"}


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_every_calibration_frame_counts(exported, tmp_path, method):
    """Statistics are collected frame by frame (bounded memory at full resolution); none may be dropped:
    the image tensor's scale must cover the one loud frame among quiet ones, wherever it comes."""
    from avssm.calib import quantize_int8

    _, files, _ = exported
    rng = np.random.default_rng(1)
    frames = [rng.uniform(-1, 1, (1, 3, *SIZE)).astype(np.float32) for _ in range(6)]
    frames[4] *= 8
    quantize_int8(files["portable"], frames, tmp_path / "int8.onnx", method=method)
    model = onnx.load(str(tmp_path / "int8.onnx"))
    padded = next(n.output[0] for n in model.graph.node if n.op_type == "Pad" and "images" in n.input)
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == padded)
    scale = float(onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == q.input[1])))
    loud = float(np.abs(frames[4]).max())
    assert scale * 127 == pytest.approx(loud, rel=0.05 if method == "minmax" else 0.5)
    assert scale * 127 > 2 * float(max(np.abs(f).max() for i, f in enumerate(frames) if i != 4))


def test_calibration_sessions_run_without_the_memory_pattern(exported, tmp_path):
    """The calibrator's session is made without ONNX Runtime's memory pattern (which doubles the peak memory
    of frame-by-frame calibration at full resolution) in avssm's calibration only: another thread's calibrator
    and log records are untouched meanwhile, and ONNX Runtime's own method is back afterwards."""
    import logging
    import threading

    from onnxruntime.quantization.calibrate import CalibraterBase, create_calibrator

    from avssm.calib.quantize import _calibration_hooks

    _, files, _ = exported
    original = CalibraterBase.create_inference_session
    other = {}

    def elsewhere():
        other["calibrator"] = create_calibrator(files["portable"], augmented_model_path=str(tmp_path / "other.onnx"))
        other["logged"] = logging.getLogger().filter(logging.makeLogRecord({"levelno": logging.WARNING}))

    with _calibration_hooks():
        calibrator = create_calibrator(files["portable"], augmented_model_path=str(tmp_path / "augmented.onnx"))
        mine = logging.getLogger().filter(logging.makeLogRecord({"levelno": logging.WARNING}))
        worker = threading.Thread(target=elsewhere)
        worker.start()
        worker.join()
    options = calibrator.infer_session.get_session_options()
    assert options.enable_mem_pattern is False
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert other["calibrator"].infer_session.get_session_options().enable_mem_pattern is True
    assert not mine and other["logged"]  # the quantizer's advice is dropped here, not in the other thread
    assert CalibraterBase.create_inference_session is original
    assert logging.getLogger().filter(logging.makeLogRecord({"levelno": logging.WARNING}))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "avssm.cli", "calib", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_errors_are_one_line(exported, tmp_path):
    tmp, files, frames = exported
    out = str(tmp_path / "x.onnx")
    cases = [
        (["--data", frames, "--frames", "4"], "4 readable frames, need at least 8"),
        (["--data", str(tmp_path / "missing.mp4")], "no such file or folder"),
        (["--data", str(tmp / "frames" / "annotations.json"), "--resize", "128x128"], "fixed input 64x96"),
    ]
    for args, message in cases:
        r = _cli(files["portable"], "-o", out, *args)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    bare = onnx.load(files["portable"])
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    r = _cli(str(tmp_path / "bare.onnx"), "-o", out, "--data", frames)
    assert r.returncode == 2 and "no avssm metadata" in r.stderr and "Traceback" not in r.stderr


def test_int8_files_are_what_tensorrts_onnx_parser_takes(quantized):
    """Every op on the list checked against TensorRT's parser, and zero points of zero (the parser's rule for
    QuantizeLinear / DequantizeLinear: TensorRT's int8 is symmetric)."""
    from onnx import numpy_helper

    from conftest import tensorrt_parser_problems

    tmp, reports = quantized
    for form in ("plugin", "portable"):
        model = onnx.load(reports[form]["output"])
        assert tensorrt_parser_problems(model) == [], form
        values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        values.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t)
                       for n in model.graph.node if n.op_type == "Constant"})
        zero_points = [n.input[2] for n in model.graph.node
                       if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]
        assert zero_points and all(not values[z].any() for z in zero_points), form


def test_the_int8_file_and_its_portable_twin_are_written_together(exported, tmp_path, monkeypatch):
    # Room for one file only: the second save fails; neither file may be left (the twin without its model).
    from avssm.calib import quantize
    from avssm.errors import FaultError

    _, files, _ = exported
    rng = np.random.default_rng(1)
    frames = [rng.uniform(-1, 1, (1, 3, *SIZE)).astype(np.float32) for _ in range(2)]
    saves = []
    real_save = quantize.onnx.save

    def save_then_full(model, path, *args, **kwargs):
        if str(tmp_path) in str(path):  # the outputs, not the temporary files
            saves.append(path)
            if len(saves) == 2:
                raise OSError(28, "No space left on device")
        return real_save(model, path, *args, **kwargs)

    monkeypatch.setattr(quantize.onnx, "save", save_then_full)
    output = tmp_path / "int8.onnx"
    with pytest.raises(FaultError, match=f"--output {output}: could not be written \\(No space left on device\\)"):
        quantize.quantize_int8(files["plugin"], frames, output, method="minmax")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
