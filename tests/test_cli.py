"""The command line as a user runs it: output, exit codes, one-line errors without tracebacks."""
import json
import os
import subprocess
import sys

import pytest


def avssm(*args):
    return subprocess.run([sys.executable, "-m", "avssm.cli", *args], capture_output=True, text=True, timeout=600)


def test_models_json_lists_counts():
    r = avssm("models", "--json", "-")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["vmamba_tiny"]["params"] == 30249064 and rows["vim_tiny_det"]["task"] == "detection"


def test_run_help_names_the_default_detector():
    from avssm.app import DEFAULT_MODEL

    r = subprocess.run([sys.executable, "-m", "avssm.cli", "run", "--help"], capture_output=True, text=True,
                       timeout=600, env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert f"Default: the shipped trained {DEFAULT_MODEL}" in r.stdout


@pytest.fixture(scope="module")
def frame_png(tmp_path_factory):
    import cv2
    import numpy as np

    path = tmp_path_factory.mktemp("frame") / "frame.png"
    cv2.imwrite(str(path), np.full((64, 64, 3), 128, np.uint8))
    return str(path)


def run_torch(frame, *args):
    return avssm("run", "--source", frame, "--backend", "torch", "--max-frames", "1", *args)


@pytest.mark.parametrize("args,message", [
    (["--model", "nope"], "unknown model 'nope'; valid models: "),
    (["--model", "vim_tiny_det", "--resize", "1080by1920"], "--resize '1080by1920': expected HxW"),
    (["--model", "vim_tiny_det", "--checkpoint", "/nonexistent.pth"], "checkpoint /nonexistent.pth: no such file"),
    (["--model", "vim_tiny"], "is a classifier"),
])
def test_user_errors_are_one_line_exit_2(frame_png, args, message):
    r = run_torch(frame_png, *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [(["eval", "x.onnx", "--bogus"], "No such option: --bogus"),
                                          (["calib"], "Missing argument")])
def test_usage_errors_exit_2_without_traceback(args, message):
    r = avssm(*args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr and "│" not in r.stderr


def test_bad_checkpoint_file_is_reported(tmp_path, frame_png):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"\x00not a checkpoint")
    r = run_torch(frame_png, "--model", "vim_tiny_det", "--checkpoint", str(bad))
    assert r.returncode == 2 and f"checkpoint {bad}: not a PyTorch checkpoint" in r.stderr


def test_wrong_config_checkpoint_names_key_and_shapes(tmp_path, frame_png):
    import torch

    from avssm.models import create_model

    path = tmp_path / "small.pth"
    torch.save({"model": create_model("vim_small", depth=1).state_dict()}, path)
    r = run_torch(frame_png, "--model", "vim_tiny_det", "--checkpoint", str(path))
    assert r.returncode == 2
    assert "cls_token' has shape (1, 1, 384) in the checkpoint but (1, 1, 192) in the model" in r.stderr


def without_torch(*args, env=None):
    code = "import sys; sys.modules['torch'] = None; sys.argv = ['avssm'] + sys.argv[1:]\nfrom avssm.cli import main; main()\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("scan_op,cpu_kernel,scan", [("portable", "1", "standard ops"), ("plugin", "1", "avssm CPU op"),
                                                     ("plugin", "0", "standard ops (lowered at load)")])
def test_exported_model_runs_without_torch(tmp_path, frame_png, scan_op, cpu_kernel, scan, monkeypatch):
    from avssm import native
    from avssm.export import export_onnx
    from avssm.models import create_model

    monkeypatch.setenv("AVSSM_CPU_KERNEL", cpu_kernel)
    if scan == "avssm CPU op" and native.ort_scan_op_library() is None:
        pytest.skip("avssm's ONNX Runtime op not built (no C compiler, or AVSSM_CPU_KERNEL=0)")
    model = create_model("vim_tiny_det", backbone_overrides=dict(embed_dim=32, depth=2))
    model.model_name = "vim_tiny_det"
    export_onnx(model, tmp_path / "det.onnx", input_size=(64, 64), scan_op=scan_op)
    r = without_torch("run", "--model", str(tmp_path / "det.onnx"), "--source", frame_png, "--json", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["frames"]["processed"] == 1 and "torch" not in report["environment"]
    assert report["backend"]["scan"] == scan


def test_commands_that_need_torch_say_so_in_one_line(tmp_path):
    for args in (["models"], ["export", "vim_tiny", "-o", str(tmp_path / "v.onnx")]):
        r = without_torch(*args, env={"AVSSM_CACHE_DIR": str(tmp_path / "cache")})  # models: not listed yet
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "needs PyTorch" in r.stderr


def test_models_are_listed_from_the_cache_once_built(tmp_path):
    # Building every registered model took 5 s or more for each `avssm models`; the rows are kept by source.
    env = {**os.environ, "AVSSM_CACHE_DIR": str(tmp_path)}
    first = subprocess.run([sys.executable, "-m", "avssm.cli", "models", "--json", "-"], capture_output=True,
                           text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr
    again = without_torch("models", "--json", "-", env={"AVSSM_CACHE_DIR": str(tmp_path)})  # no PyTorch needed now
    assert again.returncode == 0 and json.loads(again.stdout) == json.loads(first.stdout)


def test_doctor_runs_without_torch():
    # A Jetson that only runs engines has no PyTorch; doctor is what it runs first.
    r = without_torch("doctor", "--json", "-")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["torch"] is None and report["cpu_scan_kernel"] is None and "kernel_library" in report
    assert report["onnxruntime_scan_op"] is None or report["onnxruntime_scan_op"].endswith(".so")


def test_a_tensorrt_root_without_headers_is_refused_and_doctor_says_where_it_looked(tmp_path):
    env = {**os.environ, "AVSSM_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("AVSSM_KERNEL_LIB", None)
    env.pop("AVSSM_PLUGIN_LIB", None)
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "build-plugins", "--tensorrt-root", str(tmp_path / "none"),
                        "--build-dir", str(tmp_path / "build")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "no TensorRT headers there (looked for NvInfer.h in include" in r.stderr
    assert not (tmp_path / "build").exists()  # before any work
    env.pop("COLUMNS", None)  # off a terminal a line is not wrapped, whatever its length
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "doctor"], capture_output=True, text=True, env=env,
                       timeout=120)
    line = next(line for line in r.stdout.splitlines() if line.startswith("CUDA kernel library"))
    assert str(tmp_path / "cache" / "native-build" / "libavssm_kernels.so") in line and "AVSSM_KERNEL_LIB" in line


def test_cli_defaults_are_the_librarys():
    # The CLI states no default of its own for what the library decides: run, export and calib read theirs
    # from the library's option dataclasses, which the library's functions use too.
    import inspect

    import typer.main

    from avssm.calib.calibration import calibrate
    from avssm.calib.options import CalibOptions
    from avssm.cli import app
    from avssm.export.onnx_export import export_onnx
    from avssm.export.options import ExportOptions
    from avssm.runtime.config import RunConfig

    commands = typer.main.get_command(app).commands

    def defaults(name):
        return {p.name: p.default for p in commands[name].params}

    run = defaults("run")
    for field in ("max_frames", "warmup", "score_threshold", "iou_threshold"):
        assert run[field] == getattr(RunConfig, field), field
    export, signature = defaults("export"), inspect.signature(export_onnx).parameters
    assert export["input_size"] == "x".join(map(str, ExportOptions.input_size)) == "1080x1920"
    for field in ("dynamic", "batch", "scan_op", "precision", "opset"):
        assert export[field] == signature[field].default == getattr(ExportOptions, field), field
    calib, signature = defaults("calib"), inspect.signature(calibrate).parameters
    for field in ("frames", "holdout", "min_frames", "method"):
        assert calib[field] == signature[field].default == getattr(CalibOptions, field), field


def test_a_run_off_a_terminal_says_how_far_it_is(tmp_path, onnx_model):
    # A 25-minute run printed nothing until the end when piped: now a line every AVSSM_PROGRESS_EVERY seconds
    # (10 by default) with the count, the total where the source knows it, the rate and the time left.
    from avssm.app import default_sample_clip
    from avssm.cli import progress_line

    env = {**os.environ, "AVSSM_PROGRESS_EVERY": "0"}
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "run", "-m", str(onnx_model), "--source",
                        str(default_sample_clip()), "--resize", "64x64"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith("avssm: running on")]
    assert [line.split(": ")[2].split(",")[0] for line in lines] == ["1/4 frames", "2/4 frames", "3/4 frames",
                                                                     "4/4 frames"]
    assert progress_line(120, 795, 30.0, "frames") == "120/795 frames, 4.0 per second, 2:48 left"
    assert progress_line(7, None, 2.0, "frames") == "7 frames, 3.5 per second"


def test_help_names_every_value_and_version_prints_it(capsys, monkeypatch):
    # Help showed <str>, <bool>, <list[str]> and {model} where a user expects PATH, HxW, N or nothing (flags).
    import contextlib
    import re

    import avssm
    from avssm.cli import command

    monkeypatch.setenv("COLUMNS", "200")
    root = command()
    for name in ["", *root.commands]:
        with contextlib.suppress(SystemExit):
            root([name, "--help"] if name else ["--help"], prog_name="avssm", standalone_mode=False)
        text = capsys.readouterr().out
        assert "Usage: avssm" in text, name
        assert not re.search(r"<(str|bool|int|float|list)", text) and "{model}" not in text, (name, text)
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"avssm {avssm.__version__}"
