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


@pytest.mark.parametrize("scan_op", ["plugin", "portable"])
def test_a_users_model_on_mamba_ssm_exports_and_verifies(user_model, scan_op):
    r = avssm(user_model, "export", "mynet:build", "-o", "net.onnx", "--input", "x=1x50x8", "--scan-op", scan_op,
              "--verify", "--json", "-")
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout)
    assert result["scan_nodes"] == 1 and result["inputs"][0]["shape"] == [1, 50, 8]
    assert result["metadata"]["task"] == "custom" and result["metadata"]["scan_op"] == scan_op
    assert [v["output"] for v in result["verification"]] == ["output"]
    assert result["verification"][0]["max_rel"] < 1e-4


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
