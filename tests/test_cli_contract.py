"""What a user relies on from every command: exit codes (0 ok, 2 bad input before any work, 1 a fault during
the work with the partial report, 130 Ctrl-C), one-line errors naming the flag, outputs that never destroy an
input, one vocabulary (HxW sizes, `--json PATH`, `--max-frames`), warnings and progress on stderr."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from avssm.datasets.roads import render_scene, write_clip

H, W = 64, 96


def avssm(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "avssm.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})}, **kwargs)


def one_line_error(r, code, message):
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.startswith("avssm: error:")]
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "│" not in r.stderr


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from avssm.export import export_onnx
    from avssm.models import create_model

    tmp = tmp_path_factory.mktemp("contract")
    model = create_model("vim_tiny_det", backbone_overrides=dict(embed_dim=32, depth=1))
    model.model_name = "vim_tiny_det"
    export_onnx(model, tmp / "det.onnx", input_size=(H, W), dynamic=True, scan_op="portable")
    export_onnx(model, tmp / "fixed.onnx", input_size=(H, W), scan_op="portable")
    write_clip(str(tmp / "clip.mp4"), frames=4, height=H, width=W)
    folder = tmp / "images"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), render_scene(i, H, W)[0])
    (folder / "1b_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")  # sorts between 1.png and 2.png
    # A video that ends before the frame count its header gives: an AVI cut in half (read frame by frame).
    full = tmp / "full.avi"
    writer = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    for i in range(30):
        writer.write(render_scene(i, H, W)[0])
    writer.release()
    blob = full.read_bytes()
    (tmp / "truncated.avi").write_bytes(blob[:len(blob) // 2])
    return tmp


# ------------------------------------------------------------------------------------------- exit codes

def test_usage_errors_need_no_click(tmp_path):
    # typer >= 0.25 no longer installs click; avssm must not import it (pyproject does not declare it).
    code = "import sys; sys.modules['click'] = None; sys.argv = ['avssm'] + sys.argv[1:]\nfrom avssm.cli import main; main()\n"
    for args, message in ((["eval", "x.onnx", "--bogus"], "No such option: --bogus"), (["calib"], "Missing argument"),
                          (["run", "--max-frames", "0"], "'--max-frames'")):
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
        one_line_error(r, 2, message)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Usage: avssm" in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_a_run_that_stops_on_a_fault_exits_1_with_its_report(data, tmp_path):
    out = tmp_path / "r.json"
    r = avssm("run", "--model", data / "det.onnx", "--source", data / "truncated.avi", "--json", out)
    one_line_error(r, 1, "the run stopped early: source")
    assert "ended after" in r.stderr and "of its 30 frames (truncated or corrupt file)" in r.stderr
    assert "stopped: source" in r.stdout and "end_to_end" in r.stdout  # the partial report, printed
    report = json.loads(out.read_text())
    assert 0 < report["frames"]["processed"] < 29 and "truncated" in report["error"]


def signal_a_realtime_run(data, tmp_path, signum, *extra):
    """`avssm run` on a 200-frame clip played in real time, sent ``signum`` once it has written two lines of
    detections: (returncode, stdout, stderr, report)."""
    clip, dets = tmp_path / "long.mp4", tmp_path / "dets.jsonl"
    write_clip(str(clip), frames=200, height=H, width=W, fps=10.0)
    proc = subprocess.Popen([sys.executable, "-m", "avssm.cli", "run", "--model", str(data / "det.onnx"), "--source",
                             str(clip), "--realtime", "--jsonl", str(dets), *map(str, extra),
                             "--json", str(tmp_path / "r.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (dets.exists() and dets.read_text().count("\n") >= 2):
        time.sleep(0.1)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stdout, stderr, json.loads((tmp_path / "r.json").read_text())


def test_ctrl_c_exits_130_with_the_partial_report(data, tmp_path):
    code, stdout, stderr, report = signal_a_realtime_run(data, tmp_path, signal.SIGINT)
    assert code == 130, stderr
    assert "stopped: interrupted (Ctrl-C)" in stdout and "avssm: interrupted" in stderr and "Traceback" not in stderr
    assert report["interrupted"] and 0 < report["frames"]["processed"] < 199


def test_sigterm_is_handled_like_ctrl_c_and_exits_143(data, tmp_path):
    # What systemd, docker stop and ROS launch send: the partial report, no temporary file, exit 143.
    code, stdout, stderr, report = signal_a_realtime_run(data, tmp_path, signal.SIGTERM,
                                                         "--save-video", tmp_path / "rec.mp4")
    assert code == 143, stderr
    assert "stopped: terminated (SIGTERM)" in stdout and "avssm: terminated (SIGTERM)" in stderr
    assert "Traceback" not in stderr
    assert report["interrupted"] and report["signal"] == "SIGTERM" and 0 < report["frames"]["processed"] < 199
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*.partial"))


def test_sigterm_during_export_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "x.onnx"
    proc = subprocess.Popen([sys.executable, "-m", "avssm.cli", "export", "vim_tiny_det", "--input-size", "64x64",
                             "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob(".x.onnx.*.partial")):
        time.sleep(0.05)
    assert list(tmp_path.glob(".x.onnx.*.partial")), "the export never started writing"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "avssm: terminated (SIGTERM)" and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- outputs

def _blocked(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    return blocker / "out"


@pytest.mark.parametrize("flag", ["--json", "--jsonl", "--save-video"])
def test_run_outputs_are_checked_before_any_work(data, tmp_path, flag):
    blocked = _blocked(tmp_path)
    for bad, message in (("/proc/avssm-out", "cannot write in /proc"), (blocked, f"{blocked.parent} is a file, not a folder")):
        r = avssm("run", "--model", data / "det.onnx", "--source", data / "clip.mp4", flag, bad)
        one_line_error(r, 2, f"{flag} {bad}: {message}")
        assert "end_to_end" not in r.stdout + r.stderr  # nothing ran


@pytest.mark.parametrize("command", [
    ["export", "vim_tiny_det", "--input-size", "64x64", "-o", "{bad}"],
    ["export", "vim_tiny_det", "--input-size", "64x64", "-o", "{tmp}/x.onnx", "--json", "{bad}"],
    ["calib", "{data}/det.onnx", "--data", "{data}/images", "-o", "{bad}"],
    ["calib", "{data}/det.onnx", "--data", "{data}/images", "-o", "{tmp}/x.onnx", "--json", "{bad}"],
    ["bench", "--models", "vim_tiny_det", "--sizes", "64x64", "--plot", "{bad}"],
    ["bench", "--models", "vim_tiny_det", "--sizes", "64x64", "--json", "{bad}"],
    ["eval", "vim_tiny_det", "--data", "{tmp}/a.json", "--images", "{tmp}", "--json", "{bad}"],
    ["models", "--json", "{bad}"],
    ["doctor", "--json", "{bad}"],
    ["build", "{data}/det.onnx", "-o", "{bad}"],
])
def test_every_output_path_is_checked_before_any_work(data, tmp_path, command):
    args = [a.format(bad="/proc/avssm-out", tmp=tmp_path, data=data) for a in command]
    start = time.monotonic()
    r = avssm(*args)
    one_line_error(r, 2, "/proc/avssm-out: cannot write in /proc")
    assert time.monotonic() - start < 60
    assert not (tmp_path / "x.onnx").exists()


def test_train_out_folder_is_checked(tmp_path):
    r = avssm("train", "vim_tiny_det", "--data", tmp_path / "a.json", "--images", tmp_path, "--out", _blocked(tmp_path))
    one_line_error(r, 2, "is a file, not a folder")


def test_calib_refuses_to_overwrite_its_input(data, tmp_path):
    model = tmp_path / "det.onnx"
    model.write_bytes((data / "det.onnx").read_bytes())
    before = digest(model)
    link = tmp_path / "link.onnx"
    link.symlink_to(model)
    for out in (model, link):
        r = avssm("calib", model, "--data", data / "images", "-o", out, "--frames", "2", "--min-frames", "1")
        one_line_error(r, 2, f"--output {out} is the same file as MODEL {model}")
    assert digest(model) == before


def test_run_refuses_to_overwrite_its_source(data, tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes((data / "clip.mp4").read_bytes())
    before = digest(clip)
    for flag in ("--save-video", "--jsonl", "--json"):
        r = avssm("run", "--model", data / "det.onnx", "--source", clip, flag, clip)
        one_line_error(r, 2, f"{flag} {clip} is the same file as --source {clip}")
    assert digest(clip) == before


def test_export_refuses_to_overwrite_its_checkpoint(tmp_path):
    import torch

    from avssm.models import create_model

    ckpt = tmp_path / "w.pth"
    torch.save({"model": create_model("vim_tiny_det", backbone_overrides=dict(embed_dim=32, depth=1)).state_dict()},
               ckpt)
    before = digest(ckpt)
    r = avssm("export", "vim_tiny_det", "-c", ckpt, "-o", ckpt)
    one_line_error(r, 2, f"--output {ckpt} is the same file as --checkpoint {ckpt}")
    assert digest(ckpt) == before


def test_exported_files_follow_the_umask(tmp_path):
    from avssm.export import export_onnx
    from avssm.models import create_model

    model = create_model("vim_tiny_det", backbone_overrides=dict(embed_dim=32, depth=1))
    old = os.umask(0o022)
    try:
        export_onnx(model, tmp_path / "m.onnx", input_size=(H, W), scan_op="portable")
    finally:
        os.umask(old)
    assert (tmp_path / "m.onnx").stat().st_mode & 0o777 == 0o644


# ------------------------------------------------------------------------------------------- inputs

@pytest.mark.parametrize("args,message", [
    (["--max-frames", "0"], "'--max-frames'"), (["--max-frames", "-3"], "'--max-frames'"),
    (["--warmup", "-1"], "'--warmup'"), (["--score-threshold", "1.5"], "'--score-threshold'"),
    (["--score-threshold", "-0.1"], "'--score-threshold'"), (["--iou-threshold", "2"], "'--iou-threshold'"),
    (["--resize", "1280x"], "--resize '1280x': expected HxW"),
])
def test_run_numeric_options_are_validated(data, args, message):
    one_line_error(avssm("run", "--model", data / "det.onnx", "--source", data / "clip.mp4", *args), 2, message)


def test_other_numeric_options_are_validated(data, tmp_path):
    one_line_error(avssm("calib", data / "det.onnx", "--data", data / "images", "-o", tmp_path / "x.onnx",
                         "--frames", "0"), 2, "'--frames'")
    one_line_error(avssm("eval", "vim_tiny_det", "--data", tmp_path / "a.json", "--images", tmp_path,
                         "--max-frames", "0"), 2, "'--max-frames'")
    one_line_error(avssm("bench", "--repeats", "0"), 2, "'--repeats'")


def test_unreadable_image_in_a_folder_is_skipped_and_counted(data, tmp_path):
    out = tmp_path / "r.json"
    r = avssm("run", "--model", data / "det.onnx", "--source", data / "images", "--warmup", "0", "--json", out)
    assert r.returncode == 0, r.stderr
    assert f"avssm: warning: source {data / 'images' / '1b_corrupt.jpg'}: not a readable image; skipped" in r.stderr
    report = json.loads(out.read_text())
    assert report["frames"]["processed"] == 3 and report["frames"]["unreadable"] == 1  # the image after it ran too
    assert "1 unreadable skipped" in r.stdout


def test_calibration_skips_an_unreadable_image(data, tmp_path):
    from avssm.calib import calibrate

    seen = []
    report = calibrate(str(data / "det.onnx"), str(data / "images"), str(tmp_path / "q.onnx"), frames=2, holdout=1,
                       min_frames=2, method="minmax", warn=seen.append)
    assert report["calibration_frames"] == 2 and report["heldout_frames"] == 1 and report["frames_unreadable"] == 1
    assert len(seen) == 1 and "1b_corrupt.jpg: not a readable image; skipped" in seen[0]


def test_calibration_from_coco_json_skips_a_missing_image(data, tmp_path):
    from avssm.calib import calibrate
    from avssm.datasets.roads import write_dataset

    write_dataset(tmp_path / "d", count=3, seed=0, height=H, width=W)
    annotations = json.loads((tmp_path / "d" / "annotations.json").read_text())
    (tmp_path / "d" / "images" / annotations["images"][0]["file_name"]).write_bytes(b"broken")
    seen = []
    report = calibrate(str(data / "det.onnx"), str(tmp_path / "d" / "annotations.json"), str(tmp_path / "q.onnx"),
                       frames=2, holdout=0, min_frames=2, method="minmax", warn=seen.append)
    assert report["calibration_frames"] == 2 and report["frames_unreadable"] == 1
    assert len(seen) == 1 and "missing or not readable" in seen[0]


def test_eval_fixed_shape_model_gives_the_run_error(data, tmp_path):
    from avssm.datasets.roads import write_dataset

    write_dataset(tmp_path / "d", count=1, seed=0, height=H + 32, width=W)
    r = avssm("eval", data / "fixed.onnx", "--data", tmp_path / "d" / "annotations.json", "--images",
              tmp_path / "d" / "images")
    one_line_error(r, 2, f"(HxW) does not fit the model's fixed input {H}x{W}; export the model with --dynamic")
    r = avssm("run", "--model", data / "fixed.onnx", "--source", tmp_path / "d" / "images")
    one_line_error(r, 2, f"frame {H + 32}x{W} (HxW) does not fit the model's fixed input {H}x{W}; pass --resize {H}x{W}")


def test_gstreamer_camera_without_gstreamer_says_so(data):
    from avssm.runtime.sources import opencv_has_gstreamer

    if opencv_has_gstreamer():
        pytest.skip("this OpenCV has GStreamer")
    r = avssm("run", "--model", data / "det.onnx", "--camera", "gst:videotestsrc ! appsink")
    one_line_error(r, 2, "was built without GStreamer; use an OpenCV built with it (on Jetson the system one")


# ------------------------------------------------------------------------------------------- vocabulary

def test_resize_is_height_by_width(data, tmp_path):
    out = tmp_path / "r.json"
    r = avssm("run", "--model", data / "det.onnx", "--source", data / "clip.mp4", "--resize", "32x48",
              "--jsonl", tmp_path / "d.jsonl", "--json", out, "--score-threshold", "0")
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["source"]["resize"] == [32, 48]
    boxes = [d["box"] for line in (tmp_path / "d.jsonl").read_text().splitlines() for d in json.loads(line)["detections"]]
    assert boxes and max(b[2] for b in boxes) <= 48 and max(b[3] for b in boxes) <= 32  # x within W, y within H


@pytest.mark.parametrize("command", [["models"], ["doctor"],
                                     ["export", "vim_tiny_det", "--input-size", "64x64", "-o", "{tmp}/e.onnx"]])
def test_json_is_a_path_everywhere(tmp_path, command):
    args = [a.format(tmp=tmp_path) for a in command]
    to_stdout = avssm(*args, "--json", "-")
    assert to_stdout.returncode == 0, to_stdout.stderr
    json.loads(to_stdout.stdout)  # stdout is the JSON alone
    assert {"models": "vmamba_tiny", "doctor": "ONNX Runtime", "export": "wrote "}[command[0]] in to_stdout.stderr
    r = avssm(*args, "--json", tmp_path / "out.json")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "out.json").read_text()) == json.loads(to_stdout.stdout) or command[0] != "models"


def test_calib_json_stdout_is_pure_and_progress_goes_to_stderr(data, tmp_path):
    r = avssm("calib", data / "det.onnx", "--data", data / "images", "-o", tmp_path / "q.onnx", "--frames", "2",
              "--holdout", "1", "--min-frames", "1", "--method", "minmax", "--json", "-")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["output"] == str(tmp_path / "q.onnx") and report["frames_unreadable"] == 1
    assert "avssm: reading up to 2 calibration frames" in r.stderr and "SQNR" in r.stderr  # progress, summary: stderr
    assert "avssm: calibration frame 2/2 ..." in r.stderr


def test_random_weights_say_so_once(data, tmp_path):
    frame = tmp_path / "f.png"
    cv2.imwrite(str(frame), np.full((H, W, 3), 100, np.uint8))
    r = avssm("run", "--model", "vim_tiny_det", "--backend", "torch", "--source", frame, "--max-frames", "1")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("has random weights") == 1 and "detections are meaningless" in r.stderr
    r = avssm("run", "--model", data / "det.onnx", "--source", frame, "--max-frames", "1")
    assert r.returncode == 0 and "random weights" not in r.stderr  # exported from an object: weights unknown
    r = avssm("export", "vim_tiny_det", "--input-size", f"{H}x{W}", "-o", tmp_path / "r.onnx")
    assert r.returncode == 0 and r.stderr.count("random weights") == 1
    r = avssm("run", "--model", tmp_path / "r.onnx", "--source", frame, "--max-frames", "1")
    assert r.returncode == 0 and r.stderr.count("has random weights") == 1


def test_ci_runs_the_readme_test_command_in_a_fresh_venv():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ci = open(os.path.join(root, ".ci", "run")).read()
    readme = open(os.path.join(root, "README.md")).read()
    last = [line for line in ci.splitlines() if line.strip() and not line.startswith("#")][-1]
    assert "python3 -m venv" in ci and "--system-site-packages" not in ci
    assert last in readme and "pytest" in last


# ------------------------------------------------------------------------------------------- hostile files

@pytest.mark.parametrize("broken, message", [
    ("{", "its avssm metadata is not a JSON object"),
    ("[1, 2]", "its avssm metadata is not a JSON object"),
    ({"input": 5}, "its avssm metadata 'input' is 5, not an object"),
    ({"class_names": 5}, "its avssm metadata 'class_names' is 5, not a list of names"),
    ({"input": {"mean": "abc"}}, "its avssm metadata 'input.mean' is \"abc\", not three numbers"),
    ({"input": {"std": [0, 1, 1]}}, "its avssm metadata 'input.std' has a zero"),
])
def test_malformed_metadata_is_one_line_before_any_work(data, tmp_path, broken, message):
    import onnx

    from avssm.graph.metadata import KEY, read_metadata

    model = onnx.load(str(data / "det.onnx"))
    meta = read_metadata(model)
    value = broken if isinstance(broken, str) else json.dumps({**meta, **broken})
    next(p for p in model.metadata_props if p.key == KEY).value = value
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    r = avssm("run", "--model", path, "--source", data / "clip.mp4")
    one_line_error(r, 2, f"model {path}: {message}; export it again")
    assert "end_to_end" not in r.stdout


@pytest.mark.parametrize("sidecar, message", [
    ("{ not json", "is not readable JSON (JSONDecodeError)"),
    ("[]", "is not a JSON object"),
    ('{"avssm": {"model": "m"}}', "has avssm metadata that lacks task, input, scan_op, precision"),
])
def test_a_malformed_engine_sidecar_is_one_line_naming_it(data, tmp_path, sidecar, message):
    engine = tmp_path / "det.engine"
    engine.write_bytes(b"plan")
    (tmp_path / "det.engine.json").write_text(sidecar)
    r = avssm("run", "--model", engine, "--source", data / "clip.mp4", "--backend", "tensorrt")
    one_line_error(r, 2, f"engine {engine}: its sidecar {engine}.json {message}; rebuild it with `avssm build`")


def test_an_onnx_runtime_error_mid_run_is_a_fault_with_the_report(data, tmp_path):
    # A model that runs on 64x96 frames and fails on any other size (a fixed Reshape): the second image fails.
    import onnx
    from onnx import TensorProto, helper

    from avssm.graph.metadata import KEY, read_metadata

    n = 3 * H * W // 4
    nodes = [helper.make_node("Constant", [], ["shape"], value=helper.make_tensor("s", TensorProto.INT64, [3],
                                                                                  [1, n, 4])),
             helper.make_node("Reshape", ["images", "shape"], ["boxes"]),
             helper.make_node("Sigmoid", ["boxes"], ["scores"])]
    graph = helper.make_graph(nodes, "fails", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                             [1, 3, "h", "w"])],
                              [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, n, 4]),
                               helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, n, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = read_metadata(onnx.load(str(data / "det.onnx")))
    model.metadata_props.add(key=KEY, value=json.dumps({**meta, "class_names": ["a", "b", "c", "d"], "padding": None}))
    path = tmp_path / "fails.onnx"
    onnx.save(model, str(path))
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), render_scene(0, H, W)[0])
    cv2.imwrite(str(folder / "1.png"), render_scene(1, H + 1, W)[0])
    r = avssm("run", "--model", path, "--source", folder, "--warmup", "0", "--json", tmp_path / "r.json")
    one_line_error(r, 1, f"the run stopped early: model {path}: ONNX Runtime failed on a 1x3x{H + 1}x{W} input: ")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["frames"]["processed"] == 1 and "ONNX Runtime failed" in report["error"]


# ------------------------------------------------------------------------------------------- a full disk

def avssm_with_file_limit(limit: int, *args):
    """avssm with files capped at ``limit`` bytes (RLIMIT_FSIZE; SIGXFSZ ignored, so a write past it fails with
    EFBIG as a write to a full disk fails with ENOSPC)."""
    import resource

    def cap():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "avssm.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, preexec_fn=cap)


def test_export_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    out = tmp_path / "x.onnx"
    r = avssm_with_file_limit(100_000, "export", "vim_tiny_det", "--input-size", "64x64", "-o", out)
    one_line_error(r, 1, f"--output {out}: could not be written (File too large)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag, name", [("--jsonl", "dets.jsonl"), ("--record", "dets.mcap"),
                                        ("--save-video", "boxes.mp4")])
def test_run_outputs_onto_a_full_disk_are_a_fault_with_the_report(data, tmp_path, flag, name):
    clip = tmp_path / "clip.mp4"
    write_clip(str(clip), frames=40, height=H, width=W)
    out = tmp_path / "out" / name
    out.parent.mkdir()
    limit = {"--jsonl": 600, "--record": 2_000, "--save-video": 5_000}[flag]
    r = avssm_with_file_limit(limit, "run", "--model", data / "det.onnx", "--source", clip, flag, out,
                              "--score-threshold", "0")
    expected = (f"--save-video {out}: could not be written (the video does not read back: is the disk full?)"
                if flag == "--save-video" else f"{flag} {out}: could not be written (File too large)")
    one_line_error(r, 1, expected)
    assert "end_to_end" in r.stdout  # the report of what ran
    left = sorted(p.name for p in out.parent.iterdir())
    assert left == ([name] if flag == "--jsonl" else [])  # no broken video or recording, no temporary file


def test_calib_onto_a_full_disk_is_one_line_and_leaves_nothing(data, tmp_path):
    out = tmp_path / "int8.onnx"
    r = avssm_with_file_limit(200_000, "calib", data / "det.onnx", "--data", data / "images", "-o", out,
                              "--frames", "2", "--holdout", "0", "--min-frames", "1")
    one_line_error(r, 1, "calibration's temporary files in ")  # the fp32 copy it quantizes is the first write
    assert "could not be written (File too large)" in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("first, second", [("--jsonl", "--json"), ("--save-video", "--jsonl"),
                                           ("--record", "--json")])
def test_two_outputs_of_one_run_may_not_be_the_same_file(data, tmp_path, first, second):
    same = tmp_path / ("out.mcap" if "--record" in (first, second) else "out.txt")
    link = tmp_path / "link"
    link.symlink_to(same)
    for a, b in ((same, same), (same, link)):
        r = avssm("run", "--model", data / "det.onnx", "--source", data / "clip.mp4", first, a, second, b)
        one_line_error(r, 2, f"{second} {b} is the same file as {first} {a}: one would overwrite the other; give "
                             "each output its own file")
        assert not same.exists()


@pytest.mark.parametrize("command", ["calib", "run"])
def test_a_model_whose_external_data_is_missing_is_one_line(data, tmp_path, command):
    import onnx

    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save_model(onnx.load(str(data / "det.onnx")), str(folder / "det.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=1024)
    (folder / "weights.bin").unlink()
    args = (["calib", folder / "det.onnx", "--data", data / "images", "-o", tmp_path / "int8.onnx", "--frames", "2",
             "--min-frames", "1"] if command == "calib" else
            ["run", "--model", folder / "det.onnx", "--source", data / "clip.mp4"])
    r = avssm(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "│" not in r.stderr, r.stderr
    assert f"model {folder / 'det.onnx'}: " in r.stderr and "weights.bin" in r.stderr


def test_output_is_what_avssm_says_and_nothing_else(data, tmp_path):
    """ONNX Runtime's calibrators printed 'Collecting tensor data and making histogram ...' on stdout, OpenCV its own
    '[ WARN:0@...] can't open camera by index' lines, and output that was not a terminal wrapped at 80 columns,
    splitting file names."""
    deep = tmp_path / ("a_folder_with_a_long_name_" * 4)
    deep.mkdir()
    r = avssm("calib", data / "det.onnx", "--data", data / "images", "-o", deep / "quantized.onnx", "--frames", "2",
              "--holdout", "1", "--min-frames", "1")
    assert r.returncode == 0, r.stderr
    assert "Collecting tensor data" not in r.stdout + r.stderr and "histogram" not in r.stdout + r.stderr
    wrote = [line for line in r.stdout.splitlines() if line.startswith("wrote ")]
    assert wrote and str(deep / "quantized.onnx") in wrote[0]  # one line, the path whole
    r = avssm("run", "--model", data / "det.onnx", "--camera", "97")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()] and "[ WARN" not in r.stderr
