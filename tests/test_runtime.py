"""Runtime: sources, ONNX Runtime and torch backends, the run loop, its report, and faults."""
import json
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from avssm.errors import AvssmError
from avssm.runtime import FrameSource, RunConfig, load_backend, postprocess, run
from avssm.runtime.report import SCHEMA, STAGES, format_table
from avssm.datasets.roads import render_scene, write_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "road.mp4"
    write_clip(str(path), frames=5, height=96, width=160)
    return path


def test_video_file_every_frame(clip):
    with FrameSource(str(clip)) as src:
        frames = []
        while (f := src.next()) is not None:
            frames.append(f)
    assert src.drop == "none" and len(frames) == 5 and src.dropped == 0
    assert frames[0].image.shape == (96, 160, 3) and [f.index for f in frames] == list(range(5))


def test_image_folder_and_resize(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), render_scene(i, 64, 96)[0])
    with FrameSource(str(tmp_path), resize=(32, 48)) as src:  # (H, W)
        shapes = []
        while (f := src.next()) is not None:
            shapes.append(f.image.shape)
    assert shapes == [(32, 48, 3)] * 3


def test_drop_oldest_keeps_latency_bounded(clip):
    src = FrameSource(str(clip), drop="oldest", queue_size=1)
    got = 0
    with src:
        time.sleep(0.5)  # a consumer far slower than the source
        while src.next() is not None:
            got += 1
    assert src.dropped > 0 and got + src.dropped == src.captured == 5


@pytest.mark.parametrize("name,content,message", [
    ("missing.mp4", None, "no such file"),
    ("empty", "dir", "has no images"),
    ("bad.mp4", b"not a video", "cannot be opened|no frame could be read"),
    ("bad.png", b"not an image", "not a readable image"),
])
def test_bad_sources(tmp_path, name, content, message):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(AvssmError, match=message):
        FrameSource(str(path)).probe()


def test_missing_camera_is_one_error():
    with pytest.raises(AvssmError, match="camera 97: cannot be opened"):
        FrameSource("97", camera=True).probe()


def test_postprocess_nms_is_class_aware():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([[0.9, 0.0], [0.8, 0.0], [0.0, 0.7], [0.1, 0.2]], np.float32)
    dets = postprocess(boxes, scores, ["car", "truck"], score_threshold=0.3, iou_threshold=0.5)
    assert [(d.name, round(d.score, 2)) for d in dets] == [("car", 0.9), ("truck", 0.7)]


def test_run_onnxruntime_report_and_sinks(tmp_path, clip, onnx_model):
    jsonl, video = tmp_path / "dets.jsonl", tmp_path / "out.mp4"
    report = run(str(onnx_model), str(clip), RunConfig(warmup=1, score_threshold=0.0, jsonl=str(jsonl),
                                                       save_video=str(video)))
    assert report["schema"] == SCHEMA and report["kind"] == "run" and report["error"] is None
    assert report["backend"]["name"] == "onnxruntime" and "CPU" in report["backend"]["reason"]
    assert report["frames"] == {"processed": 4, "warmup": 1, "captured": 5, "dropped": 0, "unreadable": 0}
    assert set(report["latency_ms"]) == set(STAGES) - {"from_stamp", "outputs"}  # from_stamp: recordings replayed in
    # real time; outputs: --save-outputs
    for s in report["latency_ms"].values():
        assert 0 <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"] and s["count"] == 4
    assert report["memory"]["peak_rss_mib"] > 0 and report["throughput_fps"] > 0
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) == 5 and lines[0]["detections"] and set(lines[0]["detections"][0]) == {"box", "score", "label", "class"}
    cap = cv2.VideoCapture(str(video))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    # played at the source's own rate (the clip is 10 fps), not a fixed 30
    assert cap.get(cv2.CAP_PROP_FPS) == 10.0 and report["source"]["frame_rate"] == report["source"]["save_video_fps"]
    assert "includes the wait behind earlier frames" in format_table(report)  # a file read ahead, every frame kept


def test_run_torch_backend(clip):
    from avssm.app import open_model

    report = run(open_model("vim_tiny_det"), str(clip), RunConfig(max_frames=2, warmup=1))
    assert report["backend"]["name"] == "torch" and report["frames"]["processed"] == 2
    assert report["model"]["model"] == "vim_tiny_det"


def test_fixed_shape_model_rejects_other_frame_size(tmp_path, clip):
    from avssm.export import export_onnx
    from avssm.models import create_model

    model = create_model("vim_tiny_det", backbone_overrides=dict(embed_dim=32, depth=1))
    path = tmp_path / "fixed.onnx"
    export_onnx(model, path, input_size=(64, 64), scan_op="portable")
    with pytest.raises(AvssmError, match=r"frame 96x160 \(HxW\) does not fit the model's fixed input 64x64; pass --resize 64x64"):
        run(str(path), str(clip))
    assert run(str(path), str(clip), RunConfig(resize=(64, 64), max_frames=1))["frames"]["processed"] == 1


def test_model_file_faults(tmp_path, clip):
    with pytest.raises(AvssmError, match="no such file"):
        load_backend(str(tmp_path / "none.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(AvssmError, match="not a readable ONNX file"):
        load_backend(str(tmp_path / "junk.onnx"))
    import onnx

    plain = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["images"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 8, 8])]))
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    with pytest.raises(AvssmError, match="has no avssm metadata"):
        load_backend(str(tmp_path / "plain.onnx"))


def test_cli_run_json_report(tmp_path, clip, onnx_model):
    out = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "run", "--source", str(clip), "--model", str(onnx_model),
                        "--max-frames", "2", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "end_to_end" in r.stdout and "throughput" in r.stdout
    report = json.loads(out.read_text())
    assert report["frames"]["processed"] == 2 and report["environment"]["onnxruntime"]


def test_cli_run_json_to_stdout(clip, onnx_model):
    # `--json -`: stdout is the JSON report alone, so it pipes into jq; the table goes to stderr.
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "run", "--source", str(clip), "--model", str(onnx_model),
                        "--max-frames", "1", "--json", "-"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["frames"]["processed"] == 1
    assert "end_to_end" in r.stderr and "throughput" in r.stderr


def test_cli_run_bad_source_one_line(tmp_path, onnx_model):
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "run", "--source", str(tmp_path / "nope.mp4"),
                        "--model", str(onnx_model)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr


def _has_tensorrt():
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(_has_tensorrt(), reason="checks the message shown where TensorRT is absent")
def test_tensorrt_paths_say_tensorrt_is_missing(tmp_path, onnx_model):
    from avssm.graph.metadata import read_metadata

    with pytest.raises(AvssmError, match="model.engine: no such file"):  # the file is checked first
        load_backend(str(tmp_path / "model.engine"))
    (tmp_path / "model.engine").write_bytes(b"plan")
    (tmp_path / "model.engine.json").write_text(json.dumps({"avssm": read_metadata(str(onnx_model))}))
    with pytest.raises(AvssmError, match="TensorRT is not installed"):
        load_backend(str(tmp_path / "model.engine"))
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "build", str(onnx_model), "-o", str(tmp_path / "m.engine")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "TensorRT is not installed" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("drop", ["oldest", None])
def test_realtime_file_with_drop_oldest_bounds_latency(tmp_path, onnx_model, drop):
    # --realtime alone is camera behaviour: drop oldest, unless --drop names another policy
    clip = tmp_path / "fast.mp4"
    write_clip(str(clip), frames=60, height=96, width=160, fps=60.0)
    report = run(str(onnx_model), str(clip), RunConfig(drop=drop, realtime=True, warmup=1, max_frames=5))
    assert report["frames"]["processed"] == 5 and report["source"]["realtime"]
    assert report["source"]["drop"] == "oldest"
    lat = report["latency_ms"]
    # a frame waits at most about one inference in the queue before its own inference
    assert lat["end_to_end"]["p50"] < 3 * lat["inference"]["p50"] + 50
    assert "includes the wait behind earlier frames" not in format_table(report)  # played like a camera


def test_capture_thread_failure_is_reported(tmp_path, onnx_model):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), render_scene(i, 96, 160)[0])
    src = FrameSource(str(tmp_path), resize=(0, 0))  # cv2.resize rejects a 0x0 size inside the thread
    with src:
        assert src.next() is None
    assert src.error and "capture failed" in src.error


def test_default_model_is_exported_once_and_whole(tmp_path, monkeypatch):
    from avssm.export import read_metadata
    from avssm.app import DEFAULT_MODEL, default_model_file

    monkeypatch.setenv("AVSSM_CACHE_DIR", str(tmp_path))
    first = default_model_file()
    stamp = first.stat().st_mtime_ns
    assert default_model_file() == first and first.stat().st_mtime_ns == stamp  # reused, not exported again
    assert read_metadata(first)["model"] == DEFAULT_MODEL
    assert [p.name for p in (tmp_path / "models").iterdir()] == [first.name]  # no partial export left behind


def test_preprocess_normalizes_every_level_exactly():
    from avssm.runtime.preprocess import DEFAULT_INPUT, preprocess

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    frame[0, :3] = [[0, 0, 0], [255, 255, 255], [10, 20, 30]]  # both ends of the range, and a known BGR pixel
    rgb = frame[:, :, ::-1].astype(np.float32) * np.float32(1 / 255)
    mean, std = (np.asarray(DEFAULT_INPUT[k], np.float32) for k in ("mean", "std"))
    expected = ((rgb - mean) / std).transpose(2, 0, 1)[None]
    for dtype in (np.float32, np.float16):
        x = preprocess(frame, DEFAULT_INPUT, dtype)
        assert x.dtype == dtype and x.shape == (1, 3, 37, 53) and x.flags["C_CONTIGUOUS"]
        assert np.array_equal(x, expected.astype(dtype))
    assert np.isclose(preprocess(frame)[0, 0, 0, 2], (30 / 255 - mean[0]) / std[0])  # channel 0 is red (BGR's last)
    bgr_meta = {**DEFAULT_INPUT, "color": "BGR"}
    assert np.isclose(preprocess(frame, bgr_meta)[0, 0, 0, 2], (10 / 255 - mean[0]) / std[0])
    with pytest.raises(ValueError, match="expected uint8 pixels, got float32"):
        preprocess(frame.astype(np.float32))
    with pytest.raises(ValueError, match=r"expected \(H, W, 3\) BGR"):
        preprocess(frame[:, :, 0])


@pytest.mark.parametrize("warmup", [1, 3])
def test_single_image_is_timed_after_its_warm_up(tmp_path, onnx_model, warmup):
    image, jsonl = tmp_path / "frame.png", tmp_path / "dets.jsonl"
    cv2.imwrite(str(image), render_scene(1, 96, 160)[0])
    report = run(str(onnx_model), str(image), RunConfig(warmup=warmup, score_threshold=0.0, jsonl=str(jsonl)))
    assert report["frames"] == {"processed": 1, "warmup": warmup, "captured": 1, "dropped": 0, "unreadable": 0}
    assert report["error"] is None and report["latency_ms"]["inference"]["p50"] > 0
    assert len(jsonl.read_text().splitlines()) == 1  # the frame's detections once, not once per pass


def test_onnxruntime_backend_is_at_steady_state_after_one_frame(onnx_model):
    """`avssm run` times from the second frame: by then the backend must have all the memory it uses (ONNX
    Runtime's memory pattern would allocate a second block on the second run, and page-fault it in).
    Counted in a fresh process: in this one, memory freed by earlier tests can serve either run."""
    script = (
        "import json, resource, sys, numpy as np\n"
        "from avssm.runtime import load_backend\n"
        "backend = load_backend(sys.argv[1], 'onnxruntime')\n"
        "images = np.random.default_rng(0).standard_normal((1, 3, 480, 640)).astype(np.float32)\n"
        "faults = []\n"
        "for _ in range(3):\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    backend.infer(images)\n"
        "    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
        "print(json.dumps(faults))\n")
    done = subprocess.run([sys.executable, "-c", script, str(onnx_model)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    faults = json.loads(done.stdout)
    assert faults[0] > 1000, faults  # the first run does take its memory
    assert max(faults[1:]) < faults[0] / 10, faults
