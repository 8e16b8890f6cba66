"""`avssm run --view`: the annotated stream served on a local WebSocket for the Foxglove app (``foxglove-sdk``), so
detections from a camera, a file or a recording can be watched on a headless machine (a Jetson) or without an
OpenCV GUI build. Per source: ``<topic>/image`` (JPEG ``foxglove.CompressedImage``), ``<topic>/detections``
(``foxglove.ImageAnnotations``: a box and a "class score" label per detection, on the image's frame), and
``/avssm/latency`` (JSON: the last step's stages and the throughput). Cameras and files are ``/avssm/cam<i>``.

Open the Foxglove app, "Open connection", ``ws://<host>:8765``; an Image panel shows the image topic with the
detections topic ticked as annotations.
"""
from __future__ import annotations

import json

import cv2
import numpy as np

from avssm.errors import AvssmError

LATENCY_SCHEMA = {"type": "object", "properties": {
    "fps": {"type": "number"}, "preprocess_ms": {"type": "number"}, "inference_ms": {"type": "number"},
    "postprocess_ms": {"type": "number"}, "end_to_end_ms": {"type": "number"}, "detections": {"type": "integer"}}}


class LiveView:
    def __init__(self, port: int = 8765, host: str = "127.0.0.1"):
        try:
            import foxglove
        except ImportError:
            raise AvssmError("--view needs the Foxglove SDK: pip install foxglove-sdk (or avssm[view])") from None
        self._foxglove = foxglove
        try:
            self.server = foxglove.start_server(name="avssm", host=host, port=port)
        except Exception as e:  # noqa: BLE001 - the port taken, mostly
            raise AvssmError(f"--view-port {port}: cannot serve on {host}:{port} ({e}); pick another port") from None
        self.port = self.server.port
        self._channels: dict[str, tuple] = {}
        self._latency = foxglove.Channel("/avssm/latency", message_encoding="json", schema=foxglove.Schema(
            name="avssm.Latency", encoding="jsonschema", data=json.dumps(LATENCY_SCHEMA).encode()))

    def _pair(self, base: str):
        if base not in self._channels:
            from foxglove.channels import CompressedImageChannel, ImageAnnotationsChannel

            self._channels[base] = (CompressedImageChannel(f"{base}/image"), ImageAnnotationsChannel(f"{base}/detections"))
        return self._channels[base]

    def write(self, frame, detections, stats: dict) -> None:
        from foxglove.messages import (Color, CompressedImage, ImageAnnotations, Point2, PointsAnnotation,
                                       PointsAnnotationType, TextAnnotation, Timestamp)

        base = frame.topic or f"/avssm/cam{frame.source}"
        stamp = frame.stamp_ns
        when = Timestamp(sec=stamp // 1_000_000_000, nsec=stamp % 1_000_000_000) if stamp is not None else None
        images, annotations = self._pair(base)
        jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
        images.log(CompressedImage(timestamp=when, frame_id=base, data=jpeg, format="jpeg"))
        boxes, labels = [], []
        for d in detections:
            r, g, b = (int(c) / 255 for c in np.random.default_rng(d.label).integers(64, 255, 3))  # as draw() does
            color = Color(r=r, g=g, b=b, a=1.0)
            x1, y1, x2, y2 = (float(v) for v in d.box)
            boxes.append(PointsAnnotation(timestamp=when, type=PointsAnnotationType.LineLoop, thickness=2.0,
                                          outline_color=color, points=[Point2(x=x1, y=y1), Point2(x=x2, y=y1),
                                                                       Point2(x=x2, y=y2), Point2(x=x1, y=y2)]))
            labels.append(TextAnnotation(timestamp=when, position=Point2(x=x1, y=max(0.0, y1 - 4)), font_size=14.0,
                                         text=f"{d.name} {d.score:.2f}", text_color=color,
                                         background_color=Color(r=0.0, g=0.0, b=0.0, a=0.5)))
        annotations.log(ImageAnnotations(points=boxes, texts=labels))
        self._latency.log({**{k: float(v) for k, v in stats.items() if v is not None}, "detections": len(detections)})

    def close(self) -> None:
        self.server.stop()
