"""Frame sources: cameras (V4L2, GStreamer), video files and streams, image folders, single images, and recorded
drives (rosbag2 MCAP / sqlite3, ROS 1 bags: avssm.runtime.bags), one or more image topics of them.

A source runs its capture in its own thread and hands frames over through a bounded queue:

* ``drop="oldest"`` (default for live cameras): when inference is slower than the camera, the oldest
  queued frame is dropped so latency stays bounded; drops are counted.
* ``drop="none"`` (default for files): capture waits for the consumer; every frame is processed.

Live cameras that stop delivering are reopened with backoff a few times before the source ends with
an error that the report carries. An unreadable image in a folder is skipped (``warn`` is told, and
``unreadable`` counts it); a video file that ends before the frame count in its header ends with an error.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from avssm.errors import AvssmError
from avssm.images import MAX_IMAGE_PIXELS, ImageError, read_image_file

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class SourceError(AvssmError):
    pass


@dataclass
class Frame:
    index: int
    image: np.ndarray  # uint8 BGR (H, W, 3)
    captured_at: float  # time.perf_counter() when the frame was read
    name: str = ""
    topic: str = ""                 # a recording's image topic
    stamp_ns: int | None = None     # its header.stamp
    due: float | None = None        # --realtime replay of a recording: perf_counter() time the stamp maps to
    message: object = None          # a recording's image message (rosbags' class), as read
    log_time_ns: int | None = None  # when the recording logged it
    source: int = 0                 # which of the run's sources (cameras, files, topics) it came from


def opencv_has_gstreamer() -> bool:
    import re

    return bool(re.search(r"GStreamer:\s*YES", cv2.getBuildInformation()))


def _parse_camera(spec: str):
    if spec.isdigit():
        return int(spec), cv2.CAP_V4L2 if os.name == "posix" else cv2.CAP_ANY
    if spec.startswith("/dev/video"):
        return spec, cv2.CAP_V4L2
    if spec.startswith("gst:"):
        return spec[4:], cv2.CAP_GSTREAMER
    return spec, cv2.CAP_ANY


class FrameSource:
    """Iterate over frames from ``spec``; use as a context manager so the thread stops."""

    def __init__(self, spec: str, *, camera: bool = False, resize: tuple[int, int] | None = None,
                 drop: str | None = None, queue_size: int = 2, reconnects: int = 3, max_frames: int | None = None,
                 realtime: bool = False, topics: list[str] | None = None, index: int = 0, warn=None,
                 max_image_pixels: int = MAX_IMAGE_PIXELS):
        self.spec = str(spec)
        self.max_image_pixels = max_image_pixels  # larger images and recorded frames are refused undecoded
        self.index = index  # the source's place among the run's sources (its frames carry it)
        self.topics = list(topics or [])
        self.camera = camera
        self.resize = resize  # (height, width)
        self.warn = warn or (lambda message: None)  # called from the capture thread
        self.live = camera or self.spec.startswith(("rtsp://", "http://", "https://", "gst:"))
        # a file played at its own rate (--realtime) behaves as a camera: frames inference cannot keep up with are
        # dropped, unless the caller names another policy
        self.drop = drop or ("oldest" if self.live or realtime else "none")
        if self.drop not in ("oldest", "none"):
            raise SourceError(f"--drop '{self.drop}': expected oldest or none")
        self.reconnects = reconnects
        # With drop-oldest, frames read are not frames processed: the consumer stops the source instead.
        self.max_frames = max_frames if self.drop == "none" else None
        self.realtime = realtime  # play a file at its own frame rate, like a camera
        self.dropped = 0
        self.captured = 0
        self.unreadable = 0
        self.error: str | None = None
        self._declared_fps: float | None = None  # a video file's own rate
        self._declared_count: int | None = None  # a video file's frame count, from its header (probe)
        # frames counted for frame_rate: how many, the first's and the last's time (s: capture, or stamp)
        self._counted, self._first_at, self._last_at = 0, 0.0, 0.0
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._kind, self._items = self._open_kind()

    # ---------------------------------------------------------------------------------- opening
    def _open_kind(self):
        if self.spec.startswith("gst:") and not opencv_has_gstreamer():
            raise SourceError(f"camera {self.spec}: this OpenCV ({cv2.__version__}) was built without GStreamer; "
                              "use an OpenCV built with it (on Jetson the system one: pip uninstall "
                              "opencv-python-headless, then sudo apt install python3-opencv)")
        if self.live:  # cameras and streams
            return "capture", None
        from avssm.runtime.bags import is_bag, open_topics

        if is_bag(self.spec):
            return "bag", open_topics(self.spec, self.topics, self.max_image_pixels)
        if self.topics:
            raise SourceError(f"--topic: source {self.spec} is not a recording (.mcap, .db3, .bag or a rosbag2 folder)")
        path = Path(self.spec)
        if path.is_dir():
            items = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not items:
                raise SourceError(f"source {path}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            return "images", items
        if not path.exists():
            raise SourceError(f"source {path}: no such file or folder")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return "images", [path]
        return "capture", None

    def _open_capture(self) -> cv2.VideoCapture:
        target, api = _parse_camera(self.spec) if self.camera or self.spec.startswith("gst:") else (self.spec, cv2.CAP_ANY)
        cap = cv2.VideoCapture(target, api)
        if not cap.isOpened():
            cap.release()
            what = "camera" if self.camera else "source"
            raise SourceError(f"{what} {self.spec}: cannot be opened")
        return cap

    def probe(self) -> None:
        """Fail now (not in the capture thread) if the source cannot be read at all."""
        if self._kind == "bag":
            from avssm.runtime.bags import BagError, decode_image

            pending, problem = set(self.topics), None
            try:
                for message in self._items.messages(self.topics):  # the first readable image of each topic
                    if message.topic in pending:
                        try:
                            decode_image(message.msg, message.topic, self.max_image_pixels)
                            pending.discard(message.topic)
                        except ImageError as e:
                            problem = e
                    if not pending:
                        return
            except BagError as e:
                raise SourceError(f"source {self.spec}: {e}") from None
            raise SourceError(f"source {self.spec}: " + (str(problem) if problem else
                                                          f"no message of {', '.join(sorted(pending))} could be read"))
        if self._kind == "capture":
            cap = self._open_capture()
            ok, _ = cap.read()
            if not self.live:
                self._declared_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) or None
            cap.release()
            if not ok:
                raise SourceError(f"source {self.spec}: opened but no frame could be read (corrupt or empty?)")
        else:
            problem = None
            for path in self._items:  # the first readable image will do
                try:
                    read_image_file(path, self.max_image_pixels)
                    return
                except ImageError as e:
                    problem = problem or e
            if len(self._items) == 1:
                raise SourceError(str(problem))
            raise SourceError(f"source {self.spec}: none of its images is readable ({problem})")

    # ---------------------------------------------------------------------------------- capture thread
    def _put(self, frame: Frame) -> None:
        if self.drop == "oldest":
            while True:
                try:
                    self._queue.put_nowait(frame)
                    return
                except queue.Full:
                    try:
                        self._queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
        else:
            while not self._stop.is_set():
                try:
                    self._queue.put(frame, timeout=0.1)
                    return
                except queue.Full:
                    continue

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        if self.resize is not None and tuple(image.shape[:2]) != tuple(self.resize):
            image = cv2.resize(image, self.resize[::-1], interpolation=cv2.INTER_AREA)
        return image

    def expected_frames(self) -> int | None:
        """How many frames the source will give, where that is known before reading them (a video file's header,
        an image folder, a recording's message counts), capped by max_frames; None for cameras and streams."""
        if self._kind == "images":
            known = len(self._items)
        elif self._kind == "bag":
            counts = {t.name: t.count for t in self._items.topics()}
            known = sum(counts.get(t, 0) for t in self.topics) if self.topics else None
        else:
            known = self._declared_count
        if known is None:
            return self.max_frames
        return min(known, self.max_frames) if self.max_frames else known

    def frame_rate(self) -> float | None:
        """Frames per second of the source itself: a video file's own rate, a recording's from its stamps (its first
        topic), a camera's or stream's as measured so far; None before two frames (or for images)."""
        if self._declared_fps:
            return self._declared_fps
        span = self._last_at - self._first_at
        return (self._counted - 1) / span if self._counted >= 2 and span > 0 else None

    def _count(self, at: float) -> None:
        """One frame at ``at`` seconds (capture time, or a recording's stamp) for frame_rate."""
        if self._counted == 0:
            self._first_at = at
        self._counted, self._last_at = self._counted + 1, at

    def _run_images(self) -> None:
        index = 0
        for path in self._items:
            if self._stop.is_set() or (self.max_frames and index >= self.max_frames):
                break
            try:
                image = read_image_file(path, self.max_image_pixels)
            except ImageError as e:
                self.unreadable += 1
                self.warn(f"{e}; skipped")
                continue
            self.captured += 1
            self._put(Frame(index, self._prepare(image), time.perf_counter(), path.name, source=self.index))
            index += 1

    def _run_capture(self) -> None:
        index, failures = 0, 0
        cap = None
        next_due = None
        try:
            while not self._stop.is_set() and not (self.max_frames and index >= self.max_frames):
                if cap is None:
                    try:
                        cap = self._open_capture()
                        rate = cap.get(cv2.CAP_PROP_FPS)
                        if not self.live and 0 < rate < 1000:
                            self._declared_fps = float(rate)
                    except SourceError as e:
                        if not self.live or failures >= self.reconnects:
                            self.error = str(e)
                            return
                        failures += 1
                        time.sleep(min(2.0, 0.2 * 2**failures))  # backoff before reopening
                        continue
                ok, image = cap.read()
                if not ok:
                    if not self.live:  # end of file; short of the header's frame count when truncated
                        expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
                        if 0 < index < expected:
                            self.error = (f"source {self.spec}: ended after {index} of its {expected} frames "
                                          "(truncated or corrupt file)")
                        return
                    cap.release()
                    cap = None
                    failures += 1
                    if failures > self.reconnects:
                        self.error = f"camera {self.spec}: lost; {self.reconnects} reconnects failed"
                        return
                    time.sleep(min(2.0, 0.2 * 2**failures))
                    continue
                failures = 0
                if self.realtime:
                    period = 1.0 / (cap.get(cv2.CAP_PROP_FPS) or 30.0)
                    next_due = (next_due or time.perf_counter()) + period
                    time.sleep(max(0.0, next_due - time.perf_counter()))
                self.captured += 1
                self._count(time.perf_counter())
                self._put(Frame(index, self._prepare(image), time.perf_counter(), f"{index:06d}", source=self.index))
                index += 1
        finally:
            if cap is not None:
                cap.release()

    def _run_bag(self) -> None:
        from avssm.runtime.bags import BagError, decode_image

        index, start, first_log = 0, None, None
        try:
            for message in self._items.messages(self.topics):
                if self._stop.is_set() or (self.max_frames and index >= self.max_frames):
                    break
                due = None
                if self.realtime:  # the recording's own pace: log times mapped onto this clock
                    now = time.perf_counter()
                    if start is None:
                        start, first_log = now, message.log_time_ns
                    time.sleep(max(0.0, start + (message.log_time_ns - first_log) / 1e9 - now))
                    due = start + (message.stamp_ns - first_log) / 1e9
                try:
                    image = decode_image(message.msg, message.topic, self.max_image_pixels)
                except ImageError as e:  # one message (a 0x0 or oversized image): a frame error, not a frame
                    self.unreadable += 1
                    self.warn(f"{e} (message at {message.log_time_ns} ns); skipped")
                    continue
                self.captured += 1
                if not self.topics or message.topic == self.topics[0]:
                    self._count(message.stamp_ns / 1e9)
                self._put(Frame(index, self._prepare(image), time.perf_counter(), f"{message.topic}@{message.stamp_ns}",
                                message.topic, message.stamp_ns, due, message.msg, message.log_time_ns, self.index))
                index += 1
        except BagError as e:
            self.error = f"source {self.spec}: stopped after {index} frames: {e}"

    def _run(self) -> None:
        try:
            {"images": self._run_images, "bag": self._run_bag}.get(self._kind, self._run_capture)()
        except Exception as e:  # noqa: BLE001 - reported with the run, not lost in the thread
            self.error = f"source {self.spec}: capture failed: {type(e).__name__}: {e}"
        finally:
            self._put_end()

    def _put_end(self) -> None:
        while True:
            try:
                self._queue.put(None, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        pass

    # ---------------------------------------------------------------------------------- consumer side
    def __enter__(self) -> "FrameSource":
        self._thread = threading.Thread(target=self._run, name="avssm-capture", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:  # unblock a producer waiting on a full queue
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(timeout=0.05)

    def next(self) -> Frame | None:
        """The next frame, or None at the end of the source."""
        return self._queue.get()


class SourceGroup:
    """One frame from each of several sources per call, for one batched inference: every source captures in its
    own thread (live ones keep their latest frame and count the ones they drop); with ``sync_tolerance_ms``
    (recordings) the frames of a group are aligned by their stamps, the oldest head skipped (and counted as
    unsynced) until all lie within the tolerance. The group ends when any source ends."""

    def __init__(self, sources: list[FrameSource], sync_tolerance_ms: float | None = None):
        self.sources = sources
        self.tolerance_ns = None if sync_tolerance_ms is None else int(sync_tolerance_ms * 1e6)
        self.unsynced = [0] * len(sources)
        self.ended: str | None = None  # which source ended the group

    def __enter__(self) -> "SourceGroup":
        for source in self.sources:
            source.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for source in self.sources:
            source.close()

    def probe(self) -> None:
        for source in self.sources:
            source.probe()

    def expected_steps(self) -> int | None:
        """Batches the group will give, where every source's length is known: the shortest source's frames."""
        counts = [s.expected_frames() for s in self.sources]
        return None if None in counts or not counts else min(counts)

    @property
    def error(self) -> str | None:
        return next((s.error for s in self.sources if s.error), None)

    def next(self) -> list[Frame] | None:
        heads = []
        for source in self.sources:
            frame = source.next()
            if frame is None:
                self.ended = source.spec
                return None
            heads.append(frame)
        while self.tolerance_ns is not None:
            stamps = [f.stamp_ns or 0 for f in heads]
            if max(stamps) - min(stamps) <= self.tolerance_ns:
                break
            oldest = stamps.index(min(stamps))
            self.unsynced[oldest] += 1
            frame = self.sources[oldest].next()
            if frame is None:
                self.ended = self.sources[oldest].spec
                return None
            heads[oldest] = frame
        return heads
