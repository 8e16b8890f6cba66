"""The command line as a user runs it: output, exit codes, one-line errors without tracebacks."""
import json
import subprocess
import sys

import pytest


def avssm(*args):
    return subprocess.run([sys.executable, "-m", "avssm.cli", *args], capture_output=True, text=True, timeout=600)


def test_models_json_lists_counts():
    r = avssm("models", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["vmamba_tiny"]["params"] == 30249064 and rows["vim_tiny_det"]["task"] == "detection"


def test_demo_runs_a_detector_json(tmp_path):
    r = avssm("demo", "--model", "vim_tiny_det", "--size", "256x384", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["input"] == {"height": 256, "width": 384, "source": "synthetic"}
    assert out["candidates"] == 32 * 48 + 16 * 24 + 8 * 12 and out["boxes_in_frame"]


def test_demo_on_an_image_file(tmp_path):
    import cv2
    import numpy as np

    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), np.full((200, 300, 3), 128, np.uint8))
    r = avssm("demo", "--model", "vim_tiny_det", "--image", str(path), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["input"]["width"] == 300


@pytest.mark.parametrize("args,message", [
    (["demo", "--model", "nope"], "unknown model 'nope'; valid models: "),
    (["demo", "--size", "1080by1920"], "size '1080by1920': expected HxW"),
    (["demo", "--model", "vim_tiny_det", "--size", "64x64", "--checkpoint", "/nonexistent.pth"], "no such file"),
    (["demo", "--model", "vim_tiny_det", "--image", "/nonexistent.png"], "image /nonexistent.png: no such file"),
    (["demo", "--model", "vim_tiny", "--size", "64x64"], "is a classifier"),
])
def test_user_errors_are_one_line_exit_2(args, message):
    r = avssm(*args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [(["eval", "x.onnx", "--bogus"], "No such option: --bogus"),
                                          (["calib"], "Missing argument")])
def test_usage_errors_exit_2_without_traceback(args, message):
    r = avssm(*args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr and "│" not in r.stderr


def test_bad_checkpoint_file_is_reported(tmp_path):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"\x00not a checkpoint")
    r = avssm("demo", "--model", "vim_tiny_det", "--size", "64x64", "--checkpoint", str(bad))
    assert r.returncode == 2 and f"checkpoint {bad}: not a PyTorch checkpoint" in r.stderr


def test_wrong_config_checkpoint_names_key_and_shapes(tmp_path):
    import torch

    from avssm.models import create_model

    path = tmp_path / "small.pth"
    torch.save({"model": create_model("vim_small", depth=1).state_dict()}, path)
    r = avssm("demo", "--model", "vim_tiny_det", "--size", "64x64", "--checkpoint", str(path))
    assert r.returncode == 2
    assert "cls_token' has shape (1, 1, 384) in the checkpoint but (1, 1, 192) in the model" in r.stderr


def test_runtime_and_calib_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import avssm, avssm.runtime, avssm.calib, avssm.runtime.preprocess, avssm.runtime.synthetic\n"
            "f = avssm.runtime.synthetic.synthetic_road_frame(64, 96)\n"
            "assert avssm.runtime.preprocess.preprocess(f).shape == (1, 3, 64, 96)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_build_path_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import avssm.runtime.tensorrt_backend, avssm.runtime.metadata, avssm.runtime.backends\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
