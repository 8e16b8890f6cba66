"""docs/your-model.md's worked examples run as written: the Python files and commands of sections 1 (a model on
mamba_ssm's Mamba block) and 3 (a detection head on avssm's VMamba backbone), taken from the page itself, and the
README's Python example. Section 2 needs a checkout of the official VMamba code: set AVSSM_VMAMBA_CODE to its
classification/models folder to run it too (without the released checkpoint, which is not downloaded)."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "your-model.md"


def section(number: int) -> str:
    text = PAGE.read_text()
    start = text.index(f"\n## {number}. ")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def commands(text: str) -> list[list[str]]:
    """Each command of the section's bash blocks, continuation lines joined, comments dropped."""
    found = []
    for block in blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                found.append(words)
    return found


def run(words: list[str], cwd: Path) -> subprocess.CompletedProcess:
    from avssm.app import default_sample_clip

    words = [str(default_sample_clip()) if w == "drive.mp4" else w for w in words]
    assert words[0] == "avssm", words
    return subprocess.run([sys.executable, "-m", "avssm.cli", *words[1:]], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def test_example_1_a_model_on_mamba_ssms_block(tmp_path):
    from avssm import compat

    compat.install()
    pytest.importorskip("mamba_ssm")
    model_file, snippet = blocks(section(1), "python")
    (tmp_path / "mynet.py").write_text(model_file)
    for words in commands(section(1)):
        r = run(words, tmp_path)
        assert r.returncode == 0, (words, r.stderr[-2000:])
    assert len(list((tmp_path / "outs").glob("*.npz"))) == 51  # the warm-up step and 50 timed
    r = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    import onnx

    exported = onnx.load(str(tmp_path / "mamba_block.onnx"))
    assert sum(n.op_type == "SelectiveScan" for n in exported.graph.node) == 1


@pytest.mark.skipif(not os.environ.get("AVSSM_VMAMBA_CODE"), reason="set AVSSM_VMAMBA_CODE to the official "
                    "VMamba code's classification/models folder")
def test_example_2_the_official_vmamba_code(tmp_path):
    code = Path(os.environ["AVSSM_VMAMBA_CODE"])
    for words in commands(section(2)):
        if words[:1] == ["cd"]:
            continue
        words = [w for i, w in enumerate(words) if w != "-c" and (i == 0 or words[i - 1] != "-c")]
        words = [str(tmp_path / w) if w.endswith(".onnx") else w for w in words]
        r = run(words, code)
        assert r.returncode == 0, (words, r.stderr[-2000:])


def test_example_3_a_detection_head_on_avssms_backbone(tmp_path):
    (model_file,) = blocks(section(3), "python")
    (tmp_path / "userdet.py").write_text(model_file)
    for words in commands(section(3)):
        r = run(words, tmp_path)
        assert r.returncode == 0, (words, r.stderr[-2000:])
    import numpy as np

    first = np.load(tmp_path / "outs" / "000000.npz")
    assert first["scores"].shape == (1, 3, 24, 40) and first["boxes"].shape == (1, 4, 24, 40)


def test_the_readmes_python_example_runs_as_written(tmp_path):
    # It named a placeholder checkpoint (det.pth) and video (drive.mp4): as written it failed.
    readme = (PAGE.parents[1] / "README.md").read_text()
    (code,) = blocks(readme[readme.index("## Python"):], "python")[:1]
    r = subprocess.run([sys.executable, "-c", code.replace("max_frames=100", "max_frames=2")], capture_output=True,
                       text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "nano.onnx").is_file() and (tmp_path / "dets.jsonl").read_text().count("\n") >= 2
