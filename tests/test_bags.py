"""Recorded drives as sources (avssm.runtime.bags): recordings made here from the bundled clip in each storage
(rosbag2 MCAP and sqlite3 folders, a bare .mcap, a ROS 1 .bag), two topics each (Image bgr8 and CompressedImage
jpeg), run through `avssm run`."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from avssm.runtime import RunConfig, load_backend, run
from avssm.runtime.bags import Bag, BagError, decode_image
from conftest import run_capped

FRONT, LEFT = "/cam/front/image_raw", "/cam/left/image/compressed"
SIZE = (96, 160)  # (H, W) the frames are scaled to, for speed


def clip_frames():
    from avssm.app import default_sample_clip

    cap, frames = cv2.VideoCapture(str(default_sample_clip())), []
    while (read := cap.read())[0]:
        frames.append(cv2.resize(read[1], SIZE[::-1], interpolation=cv2.INTER_AREA))
    return frames


def stamp_ns(i: int) -> int:
    return 1_700_000_000_000_000_000 + i * 100_000_000  # 10 Hz


def write_recording(path, storage: str, frames) -> None:
    """The clip as a recording: FRONT as Image (bgr8), LEFT as CompressedImage (jpeg), header stamps at 10 Hz."""
    from rosbags.typesys import Stores, get_typestore

    ros1 = storage == "ros1"
    ts = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    Image, Compressed = ts.types["sensor_msgs/msg/Image"], ts.types["sensor_msgs/msg/CompressedImage"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    if ros1:
        from rosbags.rosbag1 import Writer

        writer = Writer(path)
        serialize = ts.serialize_ros1
    else:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        writer = Writer(path, version=9, storage_plugin=plugin)
        serialize = ts.serialize_cdr
    with writer:
        front = writer.add_connection(FRONT, Image.__msgtype__, typestore=ts)
        left = writer.add_connection(LEFT, Compressed.__msgtype__, typestore=ts)
        for i, frame in enumerate(frames):
            t = stamp_ns(i)
            stamp = Time(sec=t // 10**9, nanosec=t % 10**9)
            header = Header(seq=i, stamp=stamp, frame_id="cam") if ros1 else Header(stamp=stamp, frame_id="cam")
            image = Image(header=header, height=frame.shape[0], width=frame.shape[1], encoding="bgr8", is_bigendian=0,
                          step=frame.shape[1] * 3, data=frame.reshape(-1))
            writer.write(front, t + 1_000_000, serialize(image, Image.__msgtype__))
            jpeg = cv2.imencode(".jpg", frame)[1].reshape(-1)
            writer.write(left, t + 2_000_000, serialize(Compressed(header=header, format="jpeg", data=jpeg),
                                                        Compressed.__msgtype__))


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    frames = clip_frames()
    root = tmp_path_factory.mktemp("drives")
    made = {"mcap": root / "mcap", "sqlite3": root / "sqlite3", "ros1": root / "drive.bag"}
    for storage, path in made.items():
        write_recording(path, storage, frames)
    made["mcap file"] = next((root / "mcap").glob("*.mcap"))
    # recognised by what they are: `ros2 bag record -o drive.mcap` makes a folder; a file may be named anything
    write_recording(root / "drive.mcap", "mcap", frames)
    made["folder named .mcap"] = root / "drive.mcap"
    made["mcap file named .rec"] = root / "drive.rec"
    made["mcap file named .rec"].write_bytes(made["mcap file"].read_bytes())
    folder = root / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    made["png folder"] = folder
    return made


@pytest.fixture(scope="module")
def detector(onnx_model):
    return load_backend(str(onnx_model))  # conftest's small detector: dynamic batch and size


def detections(path):
    return [json.loads(line) for line in open(path)]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3", "ros1", "mcap file", "folder named .mcap",
                                     "mcap file named .rec"])
def test_every_storage_gives_the_frames_and_their_detections(recordings, detector, tmp_path, storage):
    """Each storage yields both topics' 4 frames in recording order with their stamps; the raw Image topic's
    detections are those of the same frames read from lossless PNGs."""
    out = tmp_path / "dets.jsonl"
    report = run(detector, str(recordings[storage]), RunConfig(topics=(FRONT, LEFT), warmup=0, jsonl=str(out),
                                                               score_threshold=0.05))
    assert report["error"] is None and report["frames"]["processed"] == 8
    assert report["source"]["frame_rate"] == pytest.approx(10.0)  # from the first topic's stamps, for --save-video
    lines = detections(out)
    assert [(d["topic"], d["stamp_ns"]) for d in lines] == [(t, stamp_ns(i)) for i in range(4) for t in (FRONT, LEFT)]
    assert {d["source"] for d in lines} == {str(recordings[storage])}
    png = tmp_path / "png.jsonl"
    run(detector, str(recordings["png folder"]), RunConfig(warmup=0, jsonl=str(png), score_threshold=0.05))
    front = [d["detections"] for d in lines if d["topic"] == FRONT]
    assert front == [d["detections"] for d in detections(png)] and any(front)


def test_topics_are_listed_when_missing_or_wrong(recordings):
    for args, head in [([], "choose an image topic with --topic"),
                       (["--topic", "/cam/rear"], "--topic /cam/rear: not an image topic of")]:
        r = subprocess.run([sys.executable, "-m", "avssm.cli", "run", "--source", str(recordings["mcap"]), *args],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert head in lines[0] and lines[1:] == [f"  {FRONT}  sensor_msgs/msg/Image  4 messages",
                                                  f"  {LEFT}  sensor_msgs/msg/CompressedImage  4 messages"]


def test_a_truncated_recording_ends_with_the_frames_it_holds(tmp_path, detector):
    """An MCAP file cut short (a recorder killed mid-drive) runs to its last complete chunk and says where it
    stopped; the run's status is a fault (exit 1 from the CLI)."""
    from mcap.writer import CompressionType, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Image = ts.types["sensor_msgs/msg/Image"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    path = tmp_path / "cut.mcap"
    with open(path, "wb") as f:
        writer = Writer(f, chunk_size=4096, compression=CompressionType.NONE)  # small chunks, as a recorder's
        writer.start(profile="ros2", library="avssm tests")
        schema = writer.register_schema(name=Image.__msgtype__, encoding="ros2msg",
                                        data=ts.generate_msgdef(Image.__msgtype__, ros_version=2)[0].encode())
        channel = writer.register_channel(topic=FRONT, message_encoding="cdr", schema_id=schema)
        for i, frame in enumerate(clip_frames() * 3):
            t = stamp_ns(i)
            msg = Image(header=Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id="cam"),
                        height=frame.shape[0], width=frame.shape[1], encoding="bgr8", is_bigendian=0,
                        step=frame.shape[1] * 3, data=frame.reshape(-1))
            writer.add_message(channel, log_time=t, publish_time=t, data=ts.serialize_cdr(msg, Image.__msgtype__))
        writer.finish()
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * 0.6)])
    out = tmp_path / "dets.jsonl"
    report = run(detector, str(path), RunConfig(topics=(FRONT,), warmup=0, jsonl=str(out)))
    assert 0 < report["frames"]["processed"] < 12 and len(detections(out)) == report["frames"]["processed"]
    assert f"stopped after {report['frames']['processed']} frames" in report["error"]
    assert "cut.mcap: cannot be read further at byte" in report["error"] and "truncated" in report["error"]


def test_an_unsupported_encoding_is_named_with_its_topic(tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Image = ts.types["sensor_msgs/msg/Image"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    with Writer(tmp_path / "yuv", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/cam/yuv", Image.__msgtype__, typestore=ts)
        msg = Image(header=Header(stamp=Time(sec=1, nanosec=0), frame_id="cam"), height=2, width=2, encoding="yuv422",
                    is_bigendian=0, step=4, data=np.zeros(8, np.uint8))
        writer.write(connection, 1, ts.serialize_cdr(msg, Image.__msgtype__))
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "run", "--source", str(tmp_path / "yuv"), "--topic",
                        "/cam/yuv"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "topic /cam/yuv: image encoding 'yuv422' is not supported" in r.stderr, r.stderr


def test_image_encodings_decode_to_bgr():
    """rgb8, mono8, bgra8 and each Bayer pattern (as ROS names them: the first row's first two pixels) decode to
    the BGR image they were made from; a row step with padding is honoured."""
    rng = np.random.default_rng(0)
    bgr = np.zeros((8, 12, 3), np.uint8)
    bgr[:, :] = (40, 120, 220)  # flat colour: demosaicing is exact away from borders
    bgr += rng.integers(0, 3, bgr.shape, dtype=np.uint8)

    class Msg:
        def __init__(self, encoding, pixels, pad=0):
            self.height, self.width = pixels.shape[:2]
            rows = pixels.reshape(self.height, -1)
            self.step = rows.shape[1] + pad
            self.data = np.concatenate([rows, np.full((self.height, pad), 7, np.uint8)], axis=1).reshape(-1)
            self.encoding = encoding

    assert np.array_equal(decode_image(Msg("bgr8", bgr, pad=5), "t"), bgr)
    assert np.array_equal(decode_image(Msg("rgb8", bgr[:, :, ::-1].copy()), "t"), bgr)
    assert np.array_equal(decode_image(Msg("bgra8", np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)])), "t"), bgr)
    gray = decode_image(Msg("mono8", bgr[:, :, 1].copy(), pad=3), "t")
    assert np.array_equal(gray, np.repeat(bgr[:, :, 1:2], 3, axis=2))
    for encoding, (first, second, third, fourth) in {"bayer_rggb8": "RGGB", "bayer_bggr8": "BGGR",
                                                     "bayer_gbrg8": "GBRG", "bayer_grbg8": "GRBG"}.items():
        channel = {"B": 0, "G": 1, "R": 2}
        mosaic = np.empty(bgr.shape[:2], np.uint8)
        mosaic[0::2, 0::2] = bgr[0::2, 0::2, channel[first]]
        mosaic[0::2, 1::2] = bgr[0::2, 1::2, channel[second]]
        mosaic[1::2, 0::2] = bgr[1::2, 0::2, channel[third]]
        mosaic[1::2, 1::2] = bgr[1::2, 1::2, channel[fourth]]
        decoded = decode_image(Msg(encoding, mosaic), "t").astype(int)
        assert np.abs(decoded[2:-2, 2:-2] - bgr[2:-2, 2:-2].astype(int)).max() <= 3, encoding
    with pytest.raises(BagError, match="topic t: image 12x8 bgr8 has step 36"):
        broken = Msg("bgr8", bgr)
        broken.data = broken.data[:100]
        decode_image(broken, "t")


def test_realtime_replay_reports_latency_from_the_stamp(recordings, detector):
    report = run(detector, str(recordings["mcap"]), RunConfig(topics=(FRONT,), warmup=0, realtime=True))
    stamp = report["latency_ms"]["from_stamp"]
    assert stamp["count"] == 4 and 0 < stamp["p50"] < 1000
    assert Bag(str(recordings["sqlite3"])).image_topics()[0].count == 4


def read_recording(path):
    """{topic: [(log_time, message)]} of an MCAP file, read with rosbags (the types from the file's schemas)."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    out = {}
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        for connection, log_time, raw in reader.messages():
            out.setdefault(connection.topic, []).append((log_time, reader.deserialize(raw, connection.msgtype)))
    return out


@pytest.mark.parametrize("storage", ["mcap", "ros1"])
def test_recorded_detections_are_the_runs(recordings, detector, tmp_path, storage):
    """--record writes a Detection2DArray per frame on <image topic>/detections with the image's header, and
    with --record-images the images; every detection equals the --jsonl line of the same run."""
    out, lines = tmp_path / "out.mcap", tmp_path / "dets.jsonl"
    report = run(detector, str(recordings[storage]), RunConfig(topics=(FRONT, LEFT), warmup=0, jsonl=str(lines),
                                                               record=str(out), record_images=True,
                                                               score_threshold=0.05))
    assert report["error"] is None
    recorded = read_recording(out)
    assert {topic: len(messages) for topic, messages in recorded.items()} == {
        FRONT: 4, LEFT: 4, f"{FRONT}/detections": 4, f"{LEFT}/detections": 4}
    assert type(recorded[FRONT][0][1]).__msgtype__ == "sensor_msgs/msg/Image"
    compared = 0
    for topic in (FRONT, LEFT):
        expected = [line for line in detections(lines) if line["topic"] == topic]
        for (_, array), line in zip(recorded[f"{topic}/detections"], expected):
            stamp = array.header.stamp.sec * 10**9 + array.header.stamp.nanosec
            assert stamp == line["stamp_ns"] and array.header.frame_id == "cam"
            assert len(array.detections) == len(line["detections"])
            for det, want in zip(array.detections, line["detections"]):
                c, b = det.bbox.center.position, det.bbox
                box = [c.x - b.size_x / 2, c.y - b.size_y / 2, c.x + b.size_x / 2, c.y + b.size_y / 2]
                assert np.allclose(box, want["box"], atol=0.051) and det.header.stamp == array.header.stamp
                assert det.results[0].hypothesis.class_id == want["class"]
                assert abs(det.results[0].hypothesis.score - want["score"]) <= 5e-5
                compared += 1
    assert compared > 0


def test_ctrl_c_leaves_a_valid_recording(recordings, detector, tmp_path):
    out = tmp_path / "out.mcap"
    seen = []

    def interrupt(frame, found):
        seen.append(frame.index)
        if len(seen) == 3:
            raise KeyboardInterrupt

    report = run(detector, str(recordings["mcap"]), RunConfig(topics=(FRONT,), warmup=0, record=str(out)),
                 on_frame=interrupt)
    assert report["interrupted"]
    assert len(read_recording(out)[f"{FRONT}/detections"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mcap"]  # no partial file left


def test_camera_and_file_frames_are_recorded_under_avssm(recordings, detector, tmp_path):
    """Frames of cameras and files (two here, batched) go to /avssm/cam<i>/..., i the source's place."""
    out = tmp_path / "out.mcap"
    folder = str(recordings["png folder"])
    run(detector, [folder, folder], RunConfig(warmup=0, record=str(out), record_images=True))
    recorded = read_recording(out)
    assert sorted(recorded) == ["/avssm/cam0/detections", "/avssm/cam0/image/compressed", "/avssm/cam1/detections",
                                "/avssm/cam1/image/compressed"]
    assert len(recorded["/avssm/cam1/detections"]) == 4
    image = recorded["/avssm/cam1/image/compressed"][0][1]
    assert image.format == "jpeg" and image.header.stamp == recorded["/avssm/cam1/detections"][0][1].header.stamp
    assert image.header.frame_id == "avssm_cam1"


def test_record_flags_are_checked_before_any_work(recordings, tmp_path):
    from avssm.errors import AvssmError

    source = str(recordings["mcap"])
    for config, message in [(RunConfig(topics=(FRONT,), record_images=True), "--record-images: needs --record"),
                            (RunConfig(topics=(FRONT,), record=str(tmp_path / "x.bag")), "give a .mcap file"),
                            (RunConfig(record=source + "/x.mcap", topics=("/nope",)), "--topic /nope")]:
        with pytest.raises(AvssmError, match=message):
            config.check(source)
    with pytest.raises(AvssmError, match="--topic: source .* is not a recording"):
        RunConfig(topics=(FRONT,)).check(str(recordings["png folder"]))


# ------------------------------------------------------------------------------------------ several sources

def test_several_sources_run_as_one_batch(recordings, detector, tmp_path):
    """Two sources (the same frames from PNGs and from a recording) run as batches of 2: each frame's detections
    are those it gets alone, and the report has a row per source."""
    alone, both = tmp_path / "alone.jsonl", tmp_path / "both.jsonl"
    run(detector, str(recordings["png folder"]), RunConfig(warmup=0, jsonl=str(alone), score_threshold=0.05))
    calls = []
    infer = detector.infer
    detector.infer = lambda images: calls.append(images.shape[0]) or infer(images)
    try:
        report = run(detector, [str(recordings["png folder"]), str(recordings["png folder"])],
                     RunConfig(warmup=0, jsonl=str(both), score_threshold=0.05))
    finally:
        detector.infer = infer
    assert calls == [2, 2, 2, 2] and report["frames"]["processed"] == 8 and report["source"]["batch"] == 2
    assert [row["captured"] for row in report["sources"]] == [4, 4]
    assert all(row["latency_ms"]["end_to_end"]["count"] == 4 for row in report["sources"])
    expected = [d["detections"] for d in detections(alone) for _ in range(2)]
    assert [d["detections"] for d in detections(both)] == expected
    # each line names its source, so one --jsonl of several sources can be told apart
    assert [(d["source"], d["source_index"], d["name"]) for d in detections(both)] == [
        (str(recordings["png folder"]), i, f"{frame:03d}.png") for frame in range(4) for i in range(2)]
    from avssm.runtime.report import format_table

    assert format_table(report).count("\nsource ") == 2


def test_a_batch_1_model_says_which_export_takes_the_batch(recordings, tmp_path):
    from avssm.errors import AvssmError
    from avssm.export import export_onnx
    from avssm.models import create_model

    model = create_model("vim_tiny_det", backbone_overrides=dict(embed_dim=32, depth=1))
    path = tmp_path / "b1.onnx"
    export_onnx(model, path, input_size=SIZE, scan_op="portable")
    with pytest.raises(AvssmError, match="takes batch 1, and 2 sources make batches of 2; export it with --batch 2 "
                                         "or --dynamic"):
        run(str(path), str(recordings["mcap"]), RunConfig(topics=(FRONT, LEFT)))


def test_sources_of_different_sizes_say_resize(recordings, detector, tmp_path):
    from avssm.errors import AvssmError

    folder = tmp_path / "small"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), np.zeros((64, 96, 3), np.uint8))
    with pytest.raises(AvssmError, match="sources give frames of different sizes .*--resize HxW makes them one"):
        run(detector, [str(recordings["png folder"]), str(folder)], RunConfig(warmup=0))
    report = run(detector, [str(recordings["png folder"]), str(folder)], RunConfig(warmup=0, resize=(64, 96)))
    assert report["frames"]["processed"] == 4  # the shorter source ends the batches


def test_sync_tolerance_aligns_topics_by_stamp(tmp_path, detector):
    """Topic B starts 2 frames before topic A (stamps 100 ms apart): without a tolerance the batches pair
    frames 200 ms apart; with --sync-tolerance 50 the 2 early frames of B are skipped (counted) and each batch
    holds frames of the same stamp."""
    frames = clip_frames()
    path = tmp_path / "offset"
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {t: writer.add_connection(t, Compressed.__msgtype__, typestore=ts) for t in ("/a", "/b")}
        for topic, first in (("/b", 0), ("/a", 2)):
            for i in range(first, 6):
                t = stamp_ns(i)
                jpeg = cv2.imencode(".jpg", frames[i % 4])[1].reshape(-1)
                msg = Compressed(header=Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id=topic),
                                 format="jpeg", data=jpeg)
                writer.write(connections[topic], t, ts.serialize_cdr(msg, Compressed.__msgtype__))

    def batches(config):
        out = tmp_path / "d.jsonl"
        report = run(detector, str(path), RunConfig(topics=("/a", "/b"), warmup=0, jsonl=str(out), **config))
        stamps = [d["stamp_ns"] for d in detections(out)]
        return report, list(zip(stamps[0::2], stamps[1::2]))

    _, unsynced = batches({})
    assert unsynced[0] == (stamp_ns(2), stamp_ns(0))
    report, synced = batches({"sync_tolerance_ms": 50})
    assert synced == [(stamp_ns(i), stamp_ns(i)) for i in range(2, 6)]
    assert [row["unsynced"] for row in report["sources"]] == [0, 2]


# ------------------------------------------------------------------------------------------ live view

def test_live_view_serves_images_boxes_and_latency(recordings, detector):
    """--view: a WebSocket client on loopback (the Foxglove protocol, as the app speaks it) sees the image,
    detections and latency channels advertised, subscribes, and receives a message on each."""
    import socket
    import struct
    import threading

    pytest.importorskip("foxglove")
    from websockets.sync.client import connect

    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subscribed, done, result = threading.Event(), threading.Event(), {}

    def hold_until_subscribed(frame, found):  # the first frame advertises the channels; the rest are watched
        subscribed.wait(timeout=30)

    def run_view():
        try:
            result["report"] = run(detector, str(recordings["mcap"]), RunConfig(topics=(FRONT,), warmup=0,
                                                                                 view_port=port, score_threshold=0.05),
                                   on_frame=hold_until_subscribed)
        finally:
            done.set()

    thread = threading.Thread(target=run_view)
    thread.start()
    received: dict[str, int] = {}

    def connected():
        import time

        for _ in range(300):  # the run starts serving once its checks pass
            try:
                return connect(f"ws://127.0.0.1:{port}", subprotocols=["foxglove.sdk.v1"], open_timeout=30)
            except ConnectionRefusedError:
                time.sleep(0.1)
        raise AssertionError(f"nothing serves on port {port}")

    try:
        with connected() as ws:
            channels = {}
            while len(channels) < 3:
                message = json.loads(ws.recv(timeout=30))
                channels.update({c["id"]: (c["topic"], c["schemaName"]) for c in message.get("channels", [])})
            assert sorted(channels.values()) == [("/avssm/latency", "avssm.Latency"),
                                                 (f"{FRONT}/detections", "foxglove.ImageAnnotations"),
                                                 (f"{FRONT}/image", "foxglove.CompressedImage")]
            ids = list(channels)
            ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": i, "channelId": c}
                                                                     for i, c in enumerate(ids)]}))
            subscribed.set()
            while len(received) < 3:
                data = ws.recv(timeout=30)
                if isinstance(data, bytes) and data[0] == 1:  # message data: opcode, subscription, time, payload
                    subscription = struct.unpack_from("<I", data, 1)[0]
                    received[channels[ids[subscription]][0]] = len(data) - 13
    finally:
        subscribed.set()
        thread.join(timeout=120)
    assert done.is_set() and result["report"]["error"] is None
    assert set(received) == {"/avssm/latency", f"{FRONT}/detections", f"{FRONT}/image"} and min(received.values()) > 0


def test_a_recording_is_listed_once_per_run(recordings, detector, monkeypatch, tmp_path):
    """The checks before any work and every source of a run share one listing of the recording (listing a
    recording without a summary reads all of it)."""
    import shutil

    from avssm.runtime import bags

    copy = tmp_path / "copy"
    shutil.copytree(recordings["sqlite3"], copy)  # a state of files no earlier test listed
    listed = []
    original = bags.Bag._rosbags_topics
    monkeypatch.setattr(bags.Bag, "_rosbags_topics", lambda self: listed.append(self.path) or original(self))
    report = run(detector, str(copy), RunConfig(topics=(FRONT, LEFT), warmup=0))
    assert report["frames"]["processed"] == 8 and listed == [copy]


# ------------------------------------------------------------------------------------------ bounded reading

def write_mcap_with_chunk(path, declared: int, actual: int, compression="zstd") -> None:
    """An MCAP file (header, schema, channel, one chunk, data end, footer) whose chunk holds one Image message of
    ``actual`` bytes of zeros and declares ``declared`` uncompressed bytes: kilobytes on disk."""
    import struct
    import zlib

    import zstandard
    from mcap.data_stream import RecordBuilder
    from mcap.records import Channel, Chunk, DataEnd, Footer, Header, Schema

    compressor = zstandard.ZstdCompressor(level=1).compressobj()
    body = 22 + actual
    parts = [compressor.compress(struct.pack("<BQHIQQ", 0x05, body, 1, 0, 1, 1))]
    zeros, left = bytes(1 << 20), actual
    while left:
        parts.append(compressor.compress(zeros[:min(left, len(zeros))]))
        left -= min(left, len(zeros))
    parts.append(compressor.flush())
    builder = RecordBuilder()
    Header(profile="ros2", library="avssm tests").write(builder)
    Schema(id=1, name="sensor_msgs/msg/Image", encoding="ros2msg", data=b"").write(builder)
    Channel(id=1, schema_id=1, topic=FRONT, message_encoding="cdr", metadata={}).write(builder)
    Chunk(compression=compression, data=b"".join(parts), message_start_time=1, message_end_time=1,
          uncompressed_crc=0, uncompressed_size=declared).write(builder)
    DataEnd(data_section_crc=0).write(builder)
    Footer(summary_start=0, summary_offset_start=0, summary_crc=0).write(builder)
    magic = b"\x89MCAP0\r\n"
    path.write_bytes(magic + builder.end() + magic)
    assert zlib  # crc left at 0: "not computed", as the format allows


READ_BAG = """
import sys
from avssm.runtime.bags import Bag, BagError
try:
    print(sum(1 for _ in Bag(sys.argv[1]).messages([sys.argv[2]])), "messages")
except BagError as e:
    print(e)
"""


@pytest.mark.parametrize("declared", [1 << 30, 1000])
def test_a_chunk_that_inflates_to_a_gigabyte_is_refused_with_bounded_memory(tmp_path, declared):
    # Declared 1 GiB: refused before decompressing. Declared 1000 bytes but inflating to 1 GiB: no more than
    # 1001 bytes are decompressed. The child's data segment is capped at 1 GiB.
    path = tmp_path / "bomb.mcap"
    write_mcap_with_chunk(path, declared=declared, actual=1 << 30)
    assert path.stat().st_size < 200_000
    out = run_capped(READ_BAG, path, FRONT)
    if declared == 1 << 30:
        assert out == (f"bomb.mcap: cannot be read further at byte {path.stat().st_size - 8 - 9 - 4 - 9 - 20}: "
                       f"McapError: a chunk declares {1 << 30} bytes of data, more than the {256 << 20} avssm "
                       "decompresses (--max-image-pixels raises it)")
    else:
        assert out.endswith("McapError: a chunk holds other than the 1000 bytes it declares"), out


def test_an_oversized_or_empty_recorded_image_is_a_frame_error(tmp_path, detector):
    """A CompressedImage whose PNG declares 12000x12000 (140 KB) and raw Images of 0x0 and 10^9x0 are skipped
    with a warning naming the topic; the other frames run."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Image, Compressed = ts.types["sensor_msgs/msg/Image"], ts.types["sensor_msgs/msg/CompressedImage"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    frame = clip_frames()[0]
    with Writer(tmp_path / "odd", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        raw = writer.add_connection(FRONT, Image.__msgtype__, typestore=ts)
        packed = writer.add_connection(LEFT, Compressed.__msgtype__, typestore=ts)
        for i, (h, w, data) in enumerate([(frame.shape[0], frame.shape[1], frame.reshape(-1)), (0, 0, b""),
                                          (0, 10**9, b""), (frame.shape[0], frame.shape[1], frame.reshape(-1))]):
            header = Header(stamp=Time(sec=1, nanosec=i), frame_id="cam")
            msg = Image(header=header, height=h, width=w, encoding="bgr8", is_bigendian=0, step=w * 3,
                        data=np.frombuffer(bytes(data), np.uint8))
            writer.write(raw, 10 + i, ts.serialize_cdr(msg, Image.__msgtype__))
        png = np.frombuffer(huge_png(12000, 12000), np.uint8)
        writer.write(packed, 20, ts.serialize_cdr(Compressed(header=header, format="png", data=png),
                                                  Compressed.__msgtype__))
    warnings = []
    report = run(detector, str(tmp_path / "odd"), RunConfig(topics=(FRONT,), warmup=0), warn=warnings.append)
    assert report["frames"]["processed"] == 2 and report["frames"]["unreadable"] == 2 and report["error"] is None
    assert [w.split(" (message at")[0] for w in warnings] == [
        f"topic {FRONT}: the image is 0x0 pixels (width x height): no pixel to run on",
        f"topic {FRONT}: the image is 1000000000x0 pixels (width x height): no pixel to run on"]
    with pytest.raises(Exception) as e:
        decode_image(ts.deserialize_cdr(ts.serialize_cdr(Compressed(header=header, format="png", data=png),
                                                         Compressed.__msgtype__), Compressed.__msgtype__), LEFT)
    assert str(e.value) == (f"topic {LEFT}: compressed image ('png'): the image is 12000x12000 pixels (width x "
                            f"height), more than the {64 << 20} avssm decodes; pass --max-image-pixels 144000000 if "
                            "it is real")


def huge_png(height: int, width: int) -> bytes:
    """A valid grayscale PNG of height x width zeros, compressed to a few hundred KB, written without ever
    holding its pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, row, parts = zlib.compressobj(9), bytes(width + 1), []
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def test_an_image_file_declaring_too_many_pixels_is_refused_before_decoding(tmp_path, onnx_model):
    big = tmp_path / "big.png"
    big.write_bytes(huge_png(12000, 12000))
    assert big.stat().st_size < 200_000
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "run", "--model", str(onnx_model), "--source", str(big)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip() == (
        f"avssm: error: source {big}: the image is 12000x12000 pixels (width x height), more than the "
        f"{64 << 20} avssm decodes; pass --max-image-pixels 144000000 if it is real"), r.stderr
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((64, 96, 3), np.uint8))
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "run", "--model", str(onnx_model), "--source", str(small),
                        "--max-image-pixels", "1000"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "the image is 96x64 pixels (width x height), more than the 1000" in r.stderr
