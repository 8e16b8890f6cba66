"""The run loop: frames -> preprocess -> infer -> postprocess (threshold, class-aware NMS) -> sinks.

    from avssm.runtime import RunConfig, run
    report = run("model.onnx", "clip.mp4", RunConfig(max_frames=50))

Timing per frame: capture wait (how long inference waited for a frame), preprocess, inference,
postprocess, and end to end (from the moment the frame was read to the end of its postprocess).
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from avssm.errors import AvssmError, Terminated
from avssm.outputs import atomic_output, discard_outputs, write_fault
from avssm.runtime import report as rep
from avssm.runtime.backends import Backend, load_backend
from avssm.runtime.config import RunConfig
from avssm.runtime.preprocess import check_frame_fits, preprocess
from avssm.runtime.raw import OutputWriter, frame_normalization, frames_problem, is_detector, notice
from avssm.runtime.sources import Frame, FrameSource, SourceGroup

DEFAULT_VIDEO_FPS = 30.0  # --save-video of a source with no rate of its own (images)


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels
    score: float
    label: int
    name: str

    def to_dict(self) -> dict:
        return {"box": [round(v, 1) for v in self.box], "score": round(self.score, 4), "label": self.label,
                "class": self.name}


def postprocess(boxes: np.ndarray, scores: np.ndarray, class_names: list[str], score_threshold: float = 0.3,
                iou_threshold: float = 0.6, max_candidates: int = 2000, max_detections: int = 300) -> list[Detection]:
    """One image's (P, 4) xyxy boxes and (P, C) scores -> detections after class-aware NMS (OpenCV)."""
    best = scores.max(axis=1)
    labels = scores.argmax(axis=1)
    keep = np.nonzero(best >= score_threshold)[0]
    if keep.size == 0:
        return []
    keep = keep[np.argsort(-best[keep])[:max_candidates]]
    b = boxes[keep].astype(np.float32)
    xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
    idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), best[keep].astype(float).tolist(), labels[keep].astype(int).tolist(),
                                  score_threshold, iou_threshold)
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)[:max_detections]
    out = []
    for i in idx:
        j = keep[i]
        label = int(labels[j])
        out.append(Detection(tuple(float(v) for v in boxes[j]), float(best[j]), label,
                             class_names[label] if label < len(class_names) else str(label)))
    return out


class DetectionCounts:
    """What a run found, for its report: boxes per frame and per class, over the frames sent to the outputs."""

    def __init__(self):
        self.per_frame: list[int] = []
        self.per_class: dict[str, int] = {}

    def add(self, frames: list[list[Detection]]) -> None:
        for detections in frames:
            self.per_frame.append(len(detections))
            for d in detections:
                self.per_class[d.name] = self.per_class.get(d.name, 0) + 1

    def summary(self) -> dict:
        counts = np.array(self.per_frame or [0])
        return {"frames": len(self.per_frame), "per_frame": {"median": float(np.median(counts)),
                                                             "mean": float(counts.mean()), "max": int(counts.max())},
                "per_class": dict(sorted(self.per_class.items(), key=lambda kv: -kv[1]))}


def draw(frame: np.ndarray, detections: list[Detection], fps: float | None = None) -> np.ndarray:
    img = frame.copy()
    for d in detections:
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        color = tuple(int(c) for c in np.random.default_rng(d.label).integers(64, 255, 3))
        cv2.rectangle(img, (x1, y1), (x2, y2), color, 2)
        cv2.putText(img, f"{d.name} {d.score:.2f}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1)
    if fps is not None:
        cv2.putText(img, f"{fps:.1f} fps", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 255, 0), 2)
    return img


class _Sinks:
    """Where each frame's detections go. A write that fails (a full disk) is a FaultError naming the flag; at the
    end, ``close`` finishes each output and says which could not be written (that file is removed, the others
    are kept)."""

    def __init__(self, show: bool, save_video: str | None, jsonl: str | None, record: str | None = None,
                 record_images: bool = False, view_port: int | None = None, video_rate=None,
                 sources: list[str] | None = None):
        self.show = show
        self.sources = sources or []  # each source's spec, by a frame's source index (named in --jsonl lines)
        self.save_video = save_video
        self.video_rate = video_rate or (lambda: None)  # the source's frames per second, when the video starts
        self.video_fps: float | None = None
        self.writer = None
        self._video = contextlib.ExitStack()  # the video's temporary file, renamed into place once it reads back
        self._video_frames = 0
        self.jsonl_path = jsonl
        self.jsonl = open(jsonl, "w") if jsonl else None
        self.recorder = None
        self.record = record
        self._failed: dict[str, str] = {}  # flag -> why, for outputs that could not be written
        if record:
            from avssm.runtime.recording import DetectionRecorder

            self.recorder = DetectionRecorder(record, record_images)
        self.view = None
        if view_port is not None:
            from avssm.runtime.view import LiveView

            self.view = LiveView(view_port)
        if show:
            try:
                cv2.namedWindow("avssm", cv2.WINDOW_NORMAL)
            except cv2.error:
                raise AvssmError("--show: this OpenCV build has no GUI support (opencv-python-headless); "
                                 "use --save-video instead") from None

    def write(self, frame: Frame, detections: list[Detection], fps: float | None, stats: dict | None = None) -> None:
        if self.jsonl:
            line = {"source": self.sources[frame.source] if frame.source < len(self.sources) else None,
                    "source_index": frame.source, "frame": frame.index, "name": frame.name}
            if frame.topic:
                line.update(topic=frame.topic, stamp_ns=frame.stamp_ns)
            with self._fault("--jsonl", self.jsonl_path):
                self.jsonl.write(json.dumps({**line, "detections": [d.to_dict() for d in detections]}) + "\n")
        if self.recorder:
            with self._fault("--record", self.record):
                self.recorder.write(frame, detections)
        if self.view:
            self.view.write(frame, detections, {"fps": fps, **(stats or {})})
        if self.save_video or self.show:
            img = draw(frame.image, detections, fps)
            if self.save_video:
                if self.writer is None:
                    h, w = img.shape[:2]
                    tmp = self._video.enter_context(atomic_output(self.save_video, keep_suffix=True))
                    self.video_fps = self.video_rate() or DEFAULT_VIDEO_FPS
                    self.writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.video_fps, (w, h))
                    self._video_tmp = tmp
                    if not self.writer.isOpened():
                        self.writer = None
                        discard_outputs(self._video)
                        raise AvssmError(f"--save-video {self.save_video}: cannot be written")
                self.writer.write(img)  # OpenCV reports no failure here: close() reads the file back
                self._video_frames += 1
            if self.show:
                cv2.imshow("avssm", img)
                cv2.waitKey(1)

    @contextlib.contextmanager
    def _fault(self, flag: str, path):
        try:
            yield
        except OSError as e:
            error = write_fault(flag, path, e)
            self._failed[flag] = str(error)
            raise error from None

    def close(self) -> str | None:
        """Finish every output; the first that could not be written, as one line (None when all were)."""
        if self.jsonl:
            try:
                self.jsonl.close()
            except OSError as e:
                self._failed.setdefault("--jsonl", str(write_fault("--jsonl", self.jsonl_path, e)))
        if self.recorder:
            if "--record" in self._failed:
                self.recorder.discard()
            else:
                try:
                    self.recorder.close()
                except OSError as e:
                    self._failed["--record"] = str(write_fault("--record", self.record, e))
        if self.writer is not None:
            self.writer.release()
            if _frames_in_video(self._video_tmp) == self._video_frames:
                self._video.close()  # renamed into place
            else:
                discard_outputs(self._video)
                self._failed["--save-video"] = (f"--save-video {self.save_video}: could not be written (the video "
                                                "does not read back: is the disk full?)")
        if self.view:
            self.view.close()
        if self.show:
            cv2.destroyAllWindows()
        return next(iter(self._failed.values()), None)


def _frames_in_video(path) -> int:
    """The frames a written video holds, as its container says (0 when it does not open: an unfinished file)."""
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()


def _sources(source: str | list[str], c: RunConfig, max_frames: int | None, warn) -> list[FrameSource]:
    """One FrameSource per camera, file or recording topic: several of them are batched."""
    specs = [source] if isinstance(source, str) else list(source)
    common = dict(camera=c.camera, resize=c.resize, drop=c.drop, realtime=c.realtime, max_frames=max_frames, warn=warn,
                  max_image_pixels=c.max_image_pixels)
    if len(specs) > 1:
        common["queue_size"] = 1  # latest frame per source
    if len(specs) == 1 and len(c.topics) > 1:  # several topics of one recording: one source per topic
        return [FrameSource(specs[0], topics=[topic], index=i, **common) for i, topic in enumerate(c.topics)]
    return [FrameSource(spec, topics=list(c.topics), index=i, **common) for i, spec in enumerate(specs)]


def _check_batch(be: Backend, batch: int) -> None:
    if batch > 1 and be.fixed_batch not in (None, batch):
        raise AvssmError(f"model {be.metadata.get('model')}: takes batch {be.fixed_batch}, and {batch} sources make "
                         f"batches of {batch}; export it with --batch {batch} or --dynamic")


def run(model: str | Backend, source: str | list[str], config: RunConfig | None = None, *, on_frame=None,
        warn=None, inform=None, progress=None) -> dict:
    """Run a detector (a Backend, or an exported file opened with ``load_backend``) over a source and return the
    report (see avssm/runtime/report.py). Several sources (cameras, files, or ``config.topics`` of one recording)
    run as one batch per step, a frame from each.

    A fault mid-run (camera lost, truncated file, Ctrl-C) ends the loop; the report of what ran is returned
    with ``error`` set (and ``interrupted`` for Ctrl-C). Problems found before the first frame (bad values,
    files, sizes, outputs that cannot be written) raise AvssmError. ``warn`` is told of skipped images and of
    a model with random weights, ``inform`` of where to watch the run (``--view``); ``on_frame(frame,
    detections)`` of every frame; ``progress(done, total)`` after
    every step (warm-up included), ``total`` the steps the sources will give where known (else None).
    """
    c = config or RunConfig()
    warn = warn or (lambda message: None)
    specs = [source] if isinstance(source, str) else list(source)
    for spec in specs:
        c.check(spec, {"--model": model if isinstance(model, str) else None})
    be = model if isinstance(model, Backend) else load_backend(model)
    meta = be.metadata
    detector = is_detector(be)
    if not detector:  # the user's own model on frames: no postprocessing (avssm/runtime/raw.py)
        if (problem := frames_problem(be)) is not None:
            raise AvssmError(problem)
        warn(notice(be, frames=True))
    elif (message := be.random_weights_warning()) is not None:
        warn(message)
    normalization = frame_normalization(meta)
    writer = OutputWriter(c.save_outputs) if c.save_outputs else None
    warmup, max_frames = c.warmup, c.max_frames
    group = SourceGroup(_sources(source, c, (max_frames + warmup) if max_frames else None, warn), c.sync_tolerance_ms)
    batch = len(group.sources)
    _check_batch(be, batch)
    group.probe()
    total = group.expected_steps()
    if max_frames:
        total = min(total or max_frames + warmup, max_frames + warmup)
    names = [s.spec if not s.topics else s.topics[0] for s in group.sources]
    sinks = _Sinks(c.show, c.save_video, c.jsonl, c.record, c.record_images, c.view_port,
                   video_rate=group.sources[0].frame_rate, sources=[s.spec for s in group.sources])
    if sinks.view is not None:
        (inform or (lambda message: None))(f"--view: open ws://127.0.0.1:{sinks.view.port} in the Foxglove app")
    times = rep.StageTimes()
    per_source = [rep.StageTimes() for _ in group.sources] if batch > 1 else []
    class_names = meta.get("class_names") or []
    found_counts = DetectionCounts()
    processed = warmed = 0  # steps (batches)
    error, interrupted = None, False
    rss_after_warmup = None
    t_start = None

    def step(frames: list[Frame], t_wait: float, sink: bool = True) -> None:
        """A frame from each source through preprocess, one inference, postprocess and the sinks; timed after
        the warm-up."""
        nonlocal processed, warmed, t_start, rss_after_warmup
        t0 = time.perf_counter()
        for frame, spec in zip(frames, names):
            check_frame_fits(be.fixed_hw, frame.image.shape, spec)
        if len({f.image.shape for f in frames}) > 1:
            sizes = ", ".join(f"{n} {f.image.shape[0]}x{f.image.shape[1]}" for n, f in zip(names, frames))
            raise AvssmError(f"sources give frames of different sizes ({sizes}); --resize HxW makes them one")
        x = np.concatenate([preprocess(f.image, normalization, be.input_dtype) for f in frames])
        t1 = time.perf_counter()
        out = be.infer(x)
        t2 = time.perf_counter()
        found = [postprocess(out["boxes"][i], out["scores"][i], class_names, c.score_threshold, c.iou_threshold)
                 if detector else [] for i in range(len(frames))]
        t3 = time.perf_counter()
        if writer is not None and sink:
            writer.write(out)
        t4 = time.perf_counter()
        if warmed < warmup:
            warmed += 1
        else:
            if t_start is None:
                t_start = t_wait
                rss_after_warmup = rep.rss_mib()
            processed += 1
            times.add("capture_wait", t0 - t_wait)
            times.add("preprocess", t1 - t0)
            times.add("inference", t2 - t1)
            if detector:
                times.add("postprocess", t3 - t2)
            if writer is not None and sink:
                times.add("outputs", t4 - t3)
            for i, frame in enumerate(frames):
                stages = [times, per_source[i]] if per_source else [times]
                for t in stages:
                    t.add("end_to_end", t4 - frame.captured_at)
                    if frame.due is not None:  # a recording replayed at its pace: from the image's stamp
                        t.add("from_stamp", t4 - frame.due)
        if progress is not None:
            progress(warmed + processed, total)
        if sink:
            if detector:
                found_counts.add(found)
            fps = processed * len(frames) / (t4 - t_start) if t_start and t4 > t_start else None
            stats = {"preprocess_ms": (t1 - t0) * 1e3, "inference_ms": (t2 - t1) * 1e3, "postprocess_ms": (t3 - t2) * 1e3}
            for frame, dets in zip(frames, found):
                sinks.write(frame, dets, fps, {**stats, "end_to_end_ms": (t4 - frame.captured_at) * 1e3})
                if on_frame is not None:
                    on_frame(frame, dets)

    last = None
    try:
        with group:
            while True:
                t_wait = time.perf_counter()
                frames = group.next()
                if frames is None:
                    error = group.error
                    break
                last = frames
                step(frames, t_wait)
                if max_frames and processed >= max_frames:
                    break
        # A source no longer than the warm-up (one image): its last frames again, until one run is timed;
        # the sinks have them already.
        while processed == 0 and last is not None and error is None:
            t_again = time.perf_counter()
            step([replace(f, captured_at=t_again) for f in last], t_again, sink=False)
    except KeyboardInterrupt as e:
        interrupted, error = rep.interruption(e, Terminated)
    except AvssmError as e:
        if processed == 0 and warmed == 0:
            raise
        error = str(e)
    finally:
        unwritten = sinks.close()  # an output that could not be finished (a full disk) is a fault of the run
    if unwritten and error is None:
        error = unwritten
    elapsed = (time.perf_counter() - t_start) if t_start else 0.0
    memory = rep.run_memory(be, rss_after_warmup)
    sources = group.sources
    report = {
        "schema": rep.SCHEMA,
        "kind": "run",
        "environment": rep.environment(be.info),
        "model": {k: meta.get(k) for k in ("model", "task", "precision", "scan_op", "export_size", "avssm_version",
                                           "weights")},
        "backend": be.describe(),
        "source": {"spec": specs[0] if len(specs) == 1 else specs, "camera": c.camera, "drop": sources[0].drop,
                   "realtime": c.realtime, "resize": list(c.resize) if c.resize else None,  # [height, width]
                   "topics": list(c.topics), "batch": batch, "save_outputs": c.save_outputs,
                   "frame_rate": sources[0].frame_rate(),  # its own (a file's, a recording's stamps, measured)
                   "save_video_fps": sinks.video_fps},
        # frames: per source (a batch of N counts N processed frames)
        "frames": {"processed": processed * batch, "warmup": warmed * batch,
                   "captured": sum(s.captured for s in sources), "dropped": sum(s.dropped for s in sources),
                   "unreadable": sum(s.unreadable for s in sources)},
        "latency_ms": times.summary(),
        "throughput_fps": processed * batch / elapsed if elapsed > 0 else 0.0,
        "memory": memory,
        "error": error,
        "interrupted": bool(interrupted),
        "signal": interrupted or None,
    }
    if detector:
        report["detections"] = found_counts.summary()
    if batch > 1:
        report["sources"] = [{"name": name, "captured": s.captured, "dropped": s.dropped,
                              "unsynced": group.unsynced[i], "latency_ms": per_source[i].summary()}
                             for i, (name, s) in enumerate(zip(names, sources))]
    return report
