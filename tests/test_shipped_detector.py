"""The trained detector shipped in the package (avssm/data), the default of `avssm run`."""
import pytest

from avssm.datasets.roads import CLASSES, write_dataset
from avssm.app import DEFAULT_CHECKPOINT, DEFAULT_MODEL

pytest.importorskip("pycocotools")
MIN_MAP50 = 0.4  # 2 frames vary; 200 held-out frames gave 0.79 (README)


def test_shipped_checkpoint_is_small_and_rebuilds_its_detector():
    from avssm.models import create_model

    assert DEFAULT_CHECKPOINT.stat().st_size <= 20 * 2**20
    model = create_model(DEFAULT_MODEL, checkpoint=str(DEFAULT_CHECKPOINT))  # strict: every key, every shape
    assert list(model.class_names) == list(CLASSES)


def test_shipped_detector_detects_objects_in_unseen_full_resolution_scenes(tmp_path):
    from avssm.evaluate import evaluate

    # Seeds far from the training (0...) and held-out (1,000,000...) frames of the README's recipe.
    ann = write_dataset(tmp_path, count=2, seed=3_000_000)
    result = evaluate(DEFAULT_MODEL, str(ann), str(tmp_path / "images"), backend="torch",
                      checkpoint=str(DEFAULT_CHECKPOINT))
    # Random weights score ~0.00; the threshold is well below what 200 held-out frames gave (README).
    assert result["map50"] > MIN_MAP50, result


def avssm_cli(*args, cwd=None):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "avssm.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def test_the_shipped_weights_are_named_anywhere_and_say_what_they_are(tmp_path):
    """-c shipped from any folder; `avssm models` and a run with those weights say they are a demonstration
    trained on procedural scenes; the run's report sums up what it detected."""
    import json

    from avssm.app import default_sample_clip

    r = avssm_cli("models", "--json", "-")
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows[DEFAULT_MODEL]["shipped_weights"] == str(DEFAULT_CHECKPOINT) and rows["vim_tiny"]["shipped_weights"] is None
    assert "trained on procedural road scenes only" in avssm_cli("models").stdout.replace("\n", " ")
    r = avssm_cli("export", DEFAULT_MODEL, "-c", "shipped", "-o", "nano.onnx", "--input-size", "96x160", cwd=tmp_path)
    assert r.returncode == 0 and "random weights" not in r.stderr, r.stderr[-2000:]
    r = avssm_cli("run", "-m", tmp_path / "nano.onnx", "--source", default_sample_clip(), "--resize", "96x160",
                  "--score-threshold", "0.05", "--json", "-")
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert "procedural road scenes only" in report["model"]["weights_note"] and "note: the shipped" in r.stderr
    found = report["detections"]
    assert found["frames"] == 4 and found["per_frame"]["max"] >= found["per_frame"]["median"] >= 0
    assert set(found["per_class"]) <= set(CLASSES) and sum(found["per_class"].values()) >= found["per_frame"]["max"]
    assert "detections: " in r.stderr and "per frame (median" in r.stderr
