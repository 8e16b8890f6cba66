"""`avssm run --record out.mcap`: detections where a ROS stack reads them. For every processed frame a
``vision_msgs/msg/Detection2DArray`` (vision_msgs 4.x) with the image's header, on ``<image topic>/detections`` for a
recording's frames and ``/avssm/cam<i>/detections`` for cameras and files (i: the
source's place among the run's); with ``--record-images`` the images too (a
recording's own messages, others as JPEG ``CompressedImage``), so the file plays back in Foxglove or RViz with boxes
on images. The file is ROS 2 MCAP (CDR), written beside its destination and renamed into place when the run ends,
Ctrl-C included.
"""
from __future__ import annotations

import contextlib
import time

import cv2
import numpy as np

from avssm.outputs import atomic_output, discard_outputs

# vision_msgs 4.x (ROS 2 Humble and later), as its .msg files define them.
VISION_MSGS = {
    "vision_msgs/msg/Point2D": "float64 x\nfloat64 y\n",
    "vision_msgs/msg/Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "vision_msgs/msg/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose": "vision_msgs/ObjectHypothesis hypothesis\n"
                                                "geometry_msgs/PoseWithCovariance pose\n",
    "vision_msgs/msg/Detection2D": "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
                                   "vision_msgs/BoundingBox2D bbox\nstring id\n",
    "vision_msgs/msg/Detection2DArray": "std_msgs/Header header\nvision_msgs/Detection2D[] detections\n",
}
DETECTIONS = "vision_msgs/msg/Detection2DArray"
COMPRESSED = "sensor_msgs/msg/CompressedImage"


def typestore():
    """ROS 2 Humble's message types with vision_msgs 4.x added."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    types = {}
    for name, text in VISION_MSGS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


class DetectionRecorder:
    """Writes detections (and images) of each frame to an MCAP file; ``close`` renames it into place."""

    def __init__(self, path: str, images: bool = False):
        from mcap.writer import CompressionType, Writer

        self.images = images
        self.types = typestore()
        self._stack = contextlib.ExitStack()
        self._file = self._stack.enter_context(open(self._stack.enter_context(atomic_output(path)), "wb"))
        self._writer = Writer(self._file, compression=CompressionType.ZSTD)
        self._writer.start(profile="ros2", library="avssm")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._clock = (time.time_ns(), time.perf_counter())  # wall time of a perf_counter() reading

    def _channel(self, topic: str, msgtype: str) -> int:
        if topic not in self._channels:
            if msgtype not in self._schemas:
                text = self.types.generate_msgdef(msgtype, ros_version=2)[0]
                self._schemas[msgtype] = self._writer.register_schema(name=msgtype, encoding="ros2msg",
                                                                      data=text.encode())
            self._channels[topic] = self._writer.register_channel(topic=topic, message_encoding="cdr",
                                                                  schema_id=self._schemas[msgtype])
        return self._channels[topic]

    def _write(self, topic: str, msgtype: str, msg, log_time: int) -> None:
        self._writer.add_message(self._channel(topic, msgtype), log_time=log_time, publish_time=log_time,
                                 data=self.types.serialize_cdr(msg, msgtype))

    def write(self, frame, detections) -> None:
        t = self.types.types
        if frame.message is not None:  # a recording's frame: its own header and times
            header, log_time = frame.message.header, frame.log_time_ns
            detections_topic, image_topic = f"{frame.topic}/detections", frame.topic
        else:  # a camera or file: the wall time it was read
            stamp = self._clock[0] + int((frame.captured_at - self._clock[1]) * 1e9)
            time_msg = t["builtin_interfaces/msg/Time"](sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000)
            camera = f"avssm/cam{frame.source}"
            header, log_time = t["std_msgs/msg/Header"](stamp=time_msg, frame_id=camera.replace("/", "_")), stamp
            detections_topic, image_topic = f"/{camera}/detections", f"/{camera}/image/compressed"
        header = t["std_msgs/msg/Header"](stamp=header.stamp, frame_id=header.frame_id)  # ROS 1's has a seq
        pose = t["geometry_msgs/msg/PoseWithCovariance"](
            pose=t["geometry_msgs/msg/Pose"](position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                                             orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)),
            covariance=np.zeros(36, np.float64))
        found = []
        for d in detections:
            x1, y1, x2, y2 = (float(v) for v in d.box)
            center = t["vision_msgs/msg/Pose2D"](position=t["vision_msgs/msg/Point2D"](x=(x1 + x2) / 2, y=(y1 + y2) / 2),
                                                 theta=0.0)
            hypothesis = t["vision_msgs/msg/ObjectHypothesisWithPose"](
                hypothesis=t["vision_msgs/msg/ObjectHypothesis"](class_id=d.name, score=float(d.score)), pose=pose)
            found.append(t["vision_msgs/msg/Detection2D"](
                header=header, results=[hypothesis],
                bbox=t["vision_msgs/msg/BoundingBox2D"](center=center, size_x=x2 - x1, size_y=y2 - y1), id=""))
        self._write(detections_topic, DETECTIONS, t[DETECTIONS](header=header, detections=found), log_time)
        if self.images:
            if frame.message is not None:
                msgtype = type(frame.message).__msgtype__
                self._write(image_topic, msgtype, self._ros2(frame.message, msgtype, header), log_time)
            else:
                jpeg = cv2.imencode(".jpg", frame.image)[1].reshape(-1)
                self._write(image_topic, COMPRESSED, t[COMPRESSED](header=header, format="jpeg", data=jpeg), log_time)

    def _ros2(self, msg, msgtype: str, header):
        """A recording's image message in ROS 2 form: a ROS 1 one (its header has a seq) rebuilt with ``header``."""
        if not hasattr(msg.header, "seq"):
            return msg
        t = self.types.types
        if msgtype == COMPRESSED:
            return t[COMPRESSED](header=header, format=msg.format, data=msg.data)
        return t[msgtype](header=header, height=msg.height, width=msg.width, encoding=msg.encoding,
                          is_bigendian=msg.is_bigendian, step=msg.step, data=msg.data)

    def close(self) -> None:
        """Finish the file (a valid MCAP with what was written) and rename it into place; if finishing fails
        (a full disk), the temporary file is removed and the error raised."""
        with self._stack:  # an exception from finish() reaches atomic_output, which then renames nothing
            self._writer.finish()

    def discard(self) -> None:
        """Remove the temporary file without renaming it into place (a write failed: the file is broken)."""
        discard_outputs(self._stack)
