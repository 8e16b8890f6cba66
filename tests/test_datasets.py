"""Procedural road scenes, COCO files and COCO mAP."""
import json

import numpy as np
import pytest

from avssm.datasets.coco import CocoDataset, CocoError, read_coco
from avssm.datasets.roads import CLASSES, coco_dataset, render_scene, write_dataset
from avssm.evaluate import coco_map
from avssm.runtime.preprocess import preprocess


def test_scenes_are_deterministic_and_vary():
    a, boxes_a = render_scene(7, 270, 480)
    b, boxes_b = render_scene(7, 270, 480)
    c, _ = render_scene(8, 270, 480)
    assert np.array_equal(a, b) and boxes_a == boxes_b
    assert not np.array_equal(a, c)


def test_annotations_are_valid_and_include_small_objects():
    heights = []
    for seed in range(6):
        image, boxes = render_scene(seed)
        assert image.shape == (1080, 1920, 3) and image.dtype == np.uint8 and boxes
        for b in boxes:
            assert 0 <= b.x1 < b.x2 <= 1920 and 0 <= b.y1 < b.y2 <= 1080
            assert 0 <= b.label < len(CLASSES)
            heights.append(b.y2 - b.y1)
    assert min(heights) <= 20 and max(heights) >= 100  # small distant objects and near ones
    assert len({b.label for seed in range(6) for b in render_scene(seed, 270, 480)[1]}) >= 4


def test_write_and_read_dataset(tmp_path):
    ann = write_dataset(tmp_path, count=3, seed=10, height=270, width=480)
    ds = CocoDataset(ann, tmp_path / "images")
    assert len(ds) == 3 and ds.class_names == list(CLASSES)
    frame, boxes, labels = ds[0]
    assert frame.shape == (270, 480, 3) and boxes.shape[1] == 4 and labels.shape == (boxes.shape[0],)
    _, expected = render_scene(10, 270, 480)
    assert np.allclose(boxes, [[b.x1, b.y1, b.x2, b.y2] for b in expected])
    assert preprocess(frame).shape == (1, 3, 270, 480)


@pytest.mark.parametrize("content,message", [
    (None, "no such file"),
    ("{not json", "not JSON"),
    ({"images": [], "annotations": []}, "missing list 'categories'"),
    ({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "car"}],
      "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}]}, "unknown image 2"),
    ({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "car"}],
      "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1]}]}, "annotation 5 has bbox"),
])
def test_malformed_coco_is_one_line(tmp_path, content, message):
    path = tmp_path / "ann.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(CocoError, match=message) as e:
        read_coco(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def _ground_truth():
    frames = [(f"{i}.jpg", 270, 480, render_scene(i, 270, 480)[1]) for i in range(4)]
    return coco_dataset(frames)


def test_perfect_predictions_give_map_one():
    gt = _ground_truth()
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
            for a in gt["annotations"]]
    metrics = coco_map(gt, dets)
    assert metrics["map"] == pytest.approx(1.0) and metrics["map50"] == pytest.approx(1.0)


def test_worse_predictions_score_lower():
    gt = _ground_truth()
    shifted = [{"image_id": a["image_id"], "category_id": a["category_id"],
                "bbox": [a["bbox"][0] + a["bbox"][2] * 0.3, a["bbox"][1], a["bbox"][2], a["bbox"][3]], "score": 0.9}
               for a in gt["annotations"]]
    metrics = coco_map(gt, shifted)
    assert 0.0 < metrics["map"] < 0.9 and metrics["map50"] > metrics["map75"]
    assert coco_map(gt, [])["map"] == 0.0


def test_eval_cli_on_generated_data(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "data"
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "generate-data", str(out), "--count", "2", "--size", "128x192",
                        "--clip-frames", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (out / "annotations.json").is_file() and (out / "clip.mp4").is_file()
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "eval", "vim_tiny_det", "vmamba_nano_det", "--data",
                        str(out / "annotations.json"), "--images", str(out / "images"), "--json", "-"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)  # one row per model
    assert [x["model"] for x in results] == ["vim_tiny_det", "vmamba_nano_det"]
    assert all(x["images"] == 2 and x["backend"] == "torch" and 0.0 <= x["map"] <= 1.0 for x in results)
    assert "evaluating vmamba_nano_det: 2/2 images" in r.stderr  # progress reaches logs, not the JSON
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "eval", "vim_tiny_det", "--data", str(bad),
                        "--images", str(out / "images")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and f"annotations {bad}" in r.stderr and "Traceback" not in r.stderr


def test_few_training_steps_reduce_the_loss_and_checkpoint_rebuilds_the_model(tmp_path):
    import torch

    from avssm.models import create_model
    from avssm.train import train

    ann = write_dataset(tmp_path / "data", count=2, seed=3, height=128, width=192)
    over = {"backbone_overrides": {"embed_dim": 32, "depth": 2}}
    result = train("vim_tiny_det", str(ann), str(tmp_path / "data" / "images"), out_dir=str(tmp_path / "run"),
                   epochs=30, batch=2, input_size=(128, 192), lr=2e-3, max_steps=20, overrides=over, device="cpu")
    losses = [h["loss"] for h in result["history"]]
    assert len(losses) == 20 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    model = create_model("vim_tiny_det", checkpoint=result["checkpoint"]).eval()  # config comes from the file
    assert model.class_names == list(CLASSES) and model.backbone.config.depth == 2
    with torch.no_grad():
        boxes, scores = model(torch.zeros(1, 3, 128, 192))
    assert scores.shape[-1] == len(CLASSES)
    # --resume reads last.pth (weights and optimizer state) through the same bounded reader, and goes on
    resumed = train("vim_tiny_det", str(ann), str(tmp_path / "data" / "images"), out_dir=str(tmp_path / "run"),
                    epochs=30, batch=2, input_size=(128, 192), lr=2e-3, max_steps=22, overrides=over, device="cpu",
                    resume=True)
    assert resumed["steps"] == 22 and len(resumed["history"]) == 2


def test_resume_never_runs_what_last_pth_holds(tmp_path):
    import os

    import torch

    from avssm.errors import CheckpointError
    from avssm.train import train

    ann = write_dataset(tmp_path / "data", count=2, seed=3, height=128, width=192)
    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"model": {}, "x": Payload()}, run / "last.pth")
    with pytest.raises(CheckpointError, match="refused to load: it names the Python object '(posix|os).system'"):
        train("vim_tiny_det", str(ann), str(tmp_path / "data" / "images"), out_dir=str(run), epochs=1, batch=2,
              input_size=(128, 192), max_steps=1, device="cpu", resume=True,
              overrides={"backbone_overrides": {"embed_dim": 32, "depth": 2}})
    assert not marker.exists()


def test_fcos_targets_assign_smallest_box_on_its_level():
    import torch

    from avssm.train import LEVEL_RANGES, fcos_targets

    points = torch.tensor([[20.0, 20.0], [100.0, 100.0]])
    strides = torch.tensor([8.0, 16.0])
    ranges = torch.tensor([LEVEL_RANGES[8], LEVEL_RANGES[16]])
    boxes = torch.tensor([[0.0, 0.0, 40.0, 40.0], [10.0, 10.0, 30.0, 30.0], [40.0, 40.0, 200.0, 200.0]])
    labels = torch.tensor([0, 2, 1])
    cls_t, box_t, ctr_t, pos = fcos_targets(points, strides, ranges, boxes, labels, 6)
    assert pos.tolist() == [True, True]
    assert cls_t[0].argmax() == 2 and torch.equal(box_t[0], boxes[1])  # the smaller box wins
    assert cls_t[1].argmax() == 1 and float(ctr_t[1]) == pytest.approx(0.6)  # l=t=60, r=b=100: sqrt(0.6 * 0.6)


def test_training_crops_mostly_contain_an_object_and_keep_boxes_consistent():
    from avssm.train import OBJECT_CROP_PROB, augment

    frame = np.zeros((1080, 1920, 3), np.uint8)
    box = np.array([[1500.0, 700.0, 1540.0, 730.0]], np.float32)  # one small object far from the top-left
    frame[700:730, 1500:1540] = 255
    hits = 0
    for i in range(200):
        img, bx, keep = augment(frame, box, (1080, 1920), np.random.default_rng(i), train=True, crop=(256, 256))
        assert img.shape == (256, 256, 3)
        if keep[0]:
            hits += 1
            x1, y1, x2, y2 = bx[0].round().astype(int)
            assert img[y1 + 2:y2 - 2, x1 + 2:x2 - 2].min() > 200  # the box still frames the object's pixels
    # a uniform crop would hold this object's centre in ~3% of draws
    assert hits / 200 > OBJECT_CROP_PROB - 0.1
