"""`avssm export package.module:name`: a user's own model, here one built on mamba_ssm's Mamba block, exports with
its scans as SelectiveScan nodes and runs on ONNX Runtime as PyTorch computes it."""
import json
import subprocess
import sys

import pytest
import torch

USER_MODEL = '''
import torch
from mamba_ssm import Mamba


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(8, 32)
        self.mixer = Mamba(d_model=32, d_state=8, d_conv=4, expand=2)
        self.head = torch.nn.Linear(32, 3)

    def forward(self, x):
        return self.head(self.mixer(self.embed(x)))


def build():
    torch.manual_seed(0)
    return Net()
'''


def avssm(cwd, *args):
    return subprocess.run([sys.executable, "-m", "avssm.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


@pytest.fixture
def user_model(tmp_path):
    from avssm import compat

    compat.install()  # mamba_ssm imports its CUDA-only modules at import time
    pytest.importorskip("mamba_ssm")
    (tmp_path / "mynet.py").write_text(USER_MODEL)
    return tmp_path


@pytest.mark.parametrize("scan_op,precision", [("plugin", "fp32"), ("portable", "fp32"), ("plugin", "fp16")])
def test_a_users_model_on_mamba_ssm_exports_and_verifies(user_model, scan_op, precision):
    r = avssm(user_model, "export", "mynet:build", "-o", "net.onnx", "--input", "x=1x50x8", "--scan-op", scan_op,
              "--precision", precision, "--verify", "--json", "-")
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout)
    assert result["scan_layouts"] == {"sequence": 1} and result["inputs"][0]["shape"] == [1, 50, 8]
    assert result["scan_nodes"] == (1 if scan_op == "plugin" else 0)
    assert ("scans: 1 found, each one SelectiveScan node: 1 sequence (version 1)" if scan_op == "plugin" else
            "scans: 1 found, lowered to standard ops (portable form)") in r.stderr
    assert result["metadata"]["task"] == "custom" and result["metadata"]["scan_op"] == scan_op
    assert result["metadata"]["precision"] == precision
    dtype = {"fp32": "float32", "fp16": "float16"}[precision]
    assert result["inputs"][0]["dtype"] == dtype and result["outputs"][0]["dtype"] == "float32"
    assert [v["output"] for v in result["verification"]] == ["output"]
    assert result["verification"][0]["max_rel"] < (1e-4 if precision == "fp32" else 5e-3)  # fp16 against fp32


@pytest.mark.parametrize("scan_op", ["plugin", "portable"])
def test_a_sequence_length_made_dynamic_is_verified_at_a_second_length(user_model, scan_op):
    # The portable lowering needs B's groups static; through mamba_ssm's reshapes ONNX's shape inference loses
    # them once L is dynamic, so the exporter records them.
    r = avssm(user_model, "export", "mynet:build", "-o", "net.onnx", "--input", "x=1x50x8", "--dynamic",
              "--dynamic-axes", "x=1", "--scan-op", scan_op, "--verify", "--json", "-")
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout)
    assert result["inputs"][0]["shape"] == ["batch", "x_1", 8] and result["metadata"]["dynamic"] is True
    rows = result["verification"]
    assert [row.get("at") for row in rows] == [None, "x[2,100,8]"] and all(row["max_rel"] < 1e-4 for row in rows)
    r = avssm(user_model, "export", "mynet:build", "-o", "net2.onnx", "--input", "x=1x50x8", "--dynamic-axes", "x=3")
    assert r.returncode == 2 and "--dynamic-axes x=3: expected INPUT=AXIS[,AXIS...]" in r.stderr


def test_a_checkpoint_is_read_through_the_safe_loader(user_model):
    sys.path.insert(0, str(user_model))
    try:
        import mynet

        model = mynet.build()
    finally:
        sys.path.remove(str(user_model))
        sys.modules.pop("mynet", None)
    with torch.no_grad():
        model.head.bias.fill_(7.0)
    torch.save({"model": model.state_dict()}, user_model / "w.pth")
    r = avssm(user_model, "export", "mynet:build", "-o", "net.onnx", "--input", "x=1x20x8", "-c", "w.pth", "--verify")
    assert r.returncode == 0 and "verify output" in r.stdout, r.stderr[-2000:]
    torch.save({"model": {"head.bias": torch.zeros(5)}}, user_model / "bad.pth")
    r = avssm(user_model, "export", "mynet:build", "-o", "net.onnx", "--input", "x=1x20x8", "-c", "bad.pth")
    assert r.returncode == 2 and "checkpoint bad.pth does not fit the model" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("spec, extra, message", [
    ("nosuch:build", ["--input", "x=1x2"], "MODEL nosuch:build: cannot import nosuch (ModuleNotFoundError"),
    ("mynet:missing", ["--input", "x=1x2"], "MODEL mynet:missing: mynet has no attribute missing"),
    ("mynet:build", [], "MODEL mynet:build: give each input's shape with --input NAME=1x256x64"),
    ("mynet:build", ["--input", "x=1x0x8"], "--input x=1x0x8: expected NAME=1x3x224x224"),
])
def test_what_cannot_be_exported_is_one_line(user_model, spec, extra, message):
    r = avssm(user_model, "export", spec, "-o", "x.onnx", *extra)
    lines = [line for line in r.stderr.splitlines() if line.startswith("avssm: error:")]
    assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr[-2000:]
    assert not (user_model / "x.onnx").exists()


# ---------------------------------------------------------------------- running files that are not avssm detectors

OWN_MODELS = '''
import torch
from avssm.models import create_model
from avssm.ops import selective_scan


class Sequence(torch.nn.Module):
    """Two inputs of (batch, L, 8): a selective scan over their sum, in mamba_ssm's shapes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(8, 8 + 2 * 4 + 8)
        self.A = torch.nn.Parameter(-torch.rand(8, 4) - 0.5)

    def forward(self, x, y):
        u, b, c, dt = self.proj(x + y).split([8, 4, 4, 8], dim=-1)
        out = selective_scan(u.transpose(1, 2), dt.transpose(1, 2), self.A, b.transpose(1, 2)[:, None],
                             c.transpose(1, 2)[:, None], delta_softplus=True)
        return out.transpose(1, 2), out.sum(1)


class Head(torch.nn.Module):
    """A user's head on avssm's VMamba backbone: scores and boxes per cell of the stride-16 map."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = create_model("vmamba_tiny", num_classes=0, depths=(1, 1, 1, 1), embed_dim=16)
        self.scores = torch.nn.Conv2d(64, 3, 1)
        self.boxes = torch.nn.Conv2d(64, 4, 1)

    def forward(self, images):
        (features,) = self.backbone.forward_intermediates(images, indices=[2])
        return self.scores(features).sigmoid(), self.boxes(features)
'''


@pytest.fixture(scope="module")
def own_files(tmp_path_factory):
    """The two models above exported: seq.onnx (inputs x and y, 1x24x8) and head.onnx (images 1x3x64x96)."""
    folder = tmp_path_factory.mktemp("own")
    (folder / "own_models.py").write_text(OWN_MODELS)
    for spec, file, extra in (("own_models:Sequence", "seq.onnx", ["--input", "x=1x24x8", "--input", "y=1x24x8",
                                                                   "--output-name", "seq", "--output-name", "total"]),
                              ("own_models:Head", "head.onnx", ["--input", "images=1x3x64x96"])):
        r = avssm(folder, "export", spec, "-o", file, *extra)
        assert r.returncode == 0, r.stderr[-2000:]
    return folder


def test_a_file_without_detector_metadata_runs_on_random_inputs_and_writes_raw_outputs(own_files, tmp_path):
    import numpy as np

    from avssm.runtime.backends import load_backend
    from avssm.runtime.raw import random_inputs

    out = tmp_path / "outs"
    r = avssm(own_files, "run", "-m", "seq.onnx", "--max-frames", "3", "--warmup", "1", "--save-outputs", out,
              "--json", "-")
    assert r.returncode == 0, r.stderr[-2000:]
    notice = [line for line in r.stderr.splitlines() if "not an avssm detector" in line]
    assert len(notice) == 1 and "random inputs x[1,24,8], y[1,24,8]" in notice[0]
    report = json.loads(r.stdout)
    assert report["source"]["spec"] == "random inputs" and report["source"]["inputs"] == {"x": [1, 24, 8],
                                                                                          "y": [1, 24, 8]}
    assert report["frames"]["processed"] == 3 and {"inference", "outputs"} <= set(report["latency_ms"])
    assert "postprocess" not in report["latency_ms"] and report["memory"]["peak_rss_mib"] > 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["000000.npz", "000001.npz", "000002.npz", "000003.npz"]  # the warm-up step and 3 timed
    be = load_backend(str(own_files / "seq.onnx"))
    want = be.run_inputs(random_inputs(be))
    got = np.load(out / "000003.npz")
    assert sorted(got.files) == ["seq", "total"]
    assert all(np.array_equal(got[k], want[k]) for k in ("seq", "total"))


def test_a_model_that_takes_images_runs_on_frames_without_postprocessing(own_files, tmp_path):
    from avssm.app import default_sample_clip

    r = avssm(own_files, "run", "-m", "head.onnx", "--source", default_sample_clip(), "--resize", "64x96",
              "--max-frames", "2", "--save-outputs", tmp_path / "outs", "--json", "-")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "not an avssm detector (task custom): running it on camera frames" in r.stderr
    report = json.loads(r.stdout)
    assert report["frames"]["processed"] == 2 and "postprocess" not in report["latency_ms"]
    assert {"preprocess", "inference", "outputs", "end_to_end"} <= set(report["latency_ms"])
    import numpy as np

    first = np.load(tmp_path / "outs" / "000000.npz")
    assert first["output0"].shape == (1, 3, 4, 6) and first["output1"].shape == (1, 4, 4, 6)


def test_what_a_run_of_such_a_file_cannot_do_is_one_line_before_any_work(own_files, tmp_path):
    from avssm.app import default_sample_clip

    r = avssm(own_files, "run", "-m", "seq.onnx", "--source", default_sample_clip())
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].endswith(
        "takes x[1,24,8], y[1,24,8], not camera frames ((batch, 3, H, W)); run it without --camera/--source to "
        "time it on random inputs of those shapes")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "000000.npz").write_bytes(b"the user's")
    r = avssm(own_files, "run", "-m", "seq.onnx", "--save-outputs", mine)
    assert r.returncode == 2 and "--save-outputs" in r.stderr and "is not empty" in r.stderr
    assert (mine / "000000.npz").read_bytes() == b"the user's"


def test_bench_times_such_a_file_at_its_exported_shapes(own_files):
    r = avssm(own_files, "bench", "--models", "seq.onnx", "--repeats", "2", "--json", "-")
    assert r.returncode == 0, r.stderr[-2000:]
    (entry,) = json.loads(r.stdout)["entries"]
    assert entry["inputs"] == {"x": [1, 24, 8], "y": [1, 24, 8]} and entry["latency_ms"]["inference"]["count"] == 2


def _samples(folder, count, shapes, seed=0):
    import numpy as np

    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        np.savez(folder / f"{i:03d}.npz", **{n: rng.standard_normal(s).astype("float32") for n, s in shapes.items()})
    return folder


def test_a_model_of_your_own_calibrates_on_npz_samples_or_on_frames(own_files, tmp_path):
    from avssm.app import default_sample_clip

    data = _samples(tmp_path / "samples", 10, {"x": (1, 24, 8), "y": (1, 24, 8)})
    r = avssm(own_files, "calib", "seq.onnx", "--data", data, "--frames", "8", "--holdout", "2",
              "-o", tmp_path / "seq.int8.onnx", "--json", "-")
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert report["data"] == "samples" and report["calibration_frames"] == 8 and report["heldout_frames"] == 2
    assert report["quantized_nodes"] >= 1 and set(report["outputs"]) == {"seq", "total"}
    assert all(o["cosine"] > 0.95 for o in report["outputs"].values())
    # a model that takes images: frames normalized as `avssm run` normalizes them for it
    r = avssm(own_files, "calib", "head.onnx", "--data", default_sample_clip(), "--resize", "64x96", "--frames", "3",
              "--min-frames", "2", "--holdout", "1", "-o", tmp_path / "head.int8.onnx", "--json", "-")
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert report["data"] == "frames" and report["calibration_frames"] == 3
    assert all(o["cosine"] > 0.95 for o in report["outputs"].values())


def test_calibration_data_that_does_not_fit_the_model_is_one_line(own_files, tmp_path):
    import numpy as np

    from avssm.app import default_sample_clip

    out = tmp_path / "seq.int8.onnx"
    r = avssm(own_files, "calib", "seq.onnx", "--data", default_sample_clip(), "-o", out)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].endswith(
        "takes x[1,24,8], y[1,24,8], not camera frames; give --data a folder of .npz files, one sample each with an "
        "array per input (numpy.savez)")
    data = _samples(tmp_path / "samples", 2, {"x": (1, 24, 8), "y": (1, 24, 8)})
    (data / "002.npz").write_bytes(b"not a zip")                          # skipped, with a warning
    np.savez(data / "003.npz", x=np.zeros((1, 24, 9), "float32"), y=np.zeros((1, 24, 8), "float32"))
    r = avssm(own_files, "calib", "seq.onnx", "--data", data, "--min-frames", "1", "-o", out)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and any("002.npz: not a readable .npz file" in line for line in lines)
    assert lines[-1].endswith("003.npz: array x has the shape 1x24x9; the model's input x takes 1x24x8")
    (data / "003.npz").unlink()
    np.savez(data / "003.npz", x=np.zeros((1, 24, 8 * 1000), "float32"))  # bigger than any input: not read
    r = avssm(own_files, "calib", "seq.onnx", "--data", data, "--min-frames", "1", "-o", out)
    assert r.returncode == 2 and "array x holds 768" in r.stderr and not out.exists()


def test_a_model_without_a_scan_the_exporter_sees_says_so(tmp_path):
    from avssm.export.module_export import export_module, scans_found

    class Loop(torch.nn.Module):  # a scan written as a Python loop: exported as one set of ops per step
        def forward(self, x):
            state, ys = torch.zeros_like(x[:, 0]), []
            for t in range(x.shape[1]):
                state = 0.9 * state + x[:, t]
                ys.append(state)
            return torch.stack(ys, 1)

    result = export_module(Loop(), tmp_path / "loop.onnx", inputs=[("x", (1, 6, 4))])
    assert result.scan_layouts == {} and scans_found(result).startswith("scans: none found.")
