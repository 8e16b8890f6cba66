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
