"""Recorded drives: rosbag2 (an MCAP file, or a folder with MCAP or sqlite3 storage) and ROS 1 ``.bag`` files, read
without a ROS installation (``mcap`` for MCAP, streamed so that a truncated recording yields what it holds;
``rosbags`` for the rest and for the messages' CDR encoding).

    bag = Bag("drive.mcap")
    bag.image_topics()                       # [Topic("/cam/front/image_raw", "sensor_msgs/msg/Image", 1200), ...]
    for message in bag.messages(["/cam/front/image_raw"]):
        image = decode_image(message.msg, message.topic)      # uint8 BGR (H, W, 3)

Images: ``sensor_msgs/Image`` in bgr8, rgb8, mono8, bgra8, rgba8 and the 8-bit Bayer encodings cameras record,
and ``sensor_msgs/CompressedImage`` (jpeg, png).
"""
from __future__ import annotations

import contextlib
import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from avssm.errors import AvssmError
from avssm.images import MAX_IMAGE_PIXELS, check_pixels, decode_image_bytes, max_record_bytes

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
BAG_SUFFIXES = (".mcap", ".bag", ".db3")

# ROS Bayer encodings (first row, first two pixels) -> OpenCV's code, whose names count from the second pixel.
BAYER = {"bayer_rggb8": cv2.COLOR_BayerBG2BGR, "bayer_bggr8": cv2.COLOR_BayerRG2BGR,
         "bayer_gbrg8": cv2.COLOR_BayerGR2BGR, "bayer_grbg8": cv2.COLOR_BayerGB2BGR}
ENCODINGS = ("bgr8", "rgb8", "mono8", "bgra8", "rgba8", *BAYER)


class BagError(AvssmError):
    pass


@dataclass
class Topic:
    name: str
    msgtype: str
    count: int

    def line(self) -> str:
        return f"{self.name}  {self.msgtype}  {self.count} messages"


@dataclass
class Message:
    topic: str
    log_time_ns: int  # when it was recorded
    msg: object       # the deserialized message (rosbags' classes)

    @property
    def stamp_ns(self) -> int:
        """The message's header.stamp (when the camera took the image), in nanoseconds."""
        stamp = self.msg.header.stamp
        return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


# the first bytes of each kind of recording file
MAGIC = {"mcap": b"\x89MCAP", "ros1": b"#ROSBAG", "sqlite3": b"SQLite format 3\x00"}


def file_kind(path: Path) -> str | None:
    """"mcap", "ros1" or "sqlite3" for a recording file, by its first bytes (not its name); None otherwise."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    return next((kind for kind, magic in MAGIC.items() if head.startswith(magic)), None)


def is_bag(spec: str) -> bool:
    """A recording: a file that is one (by its first bytes, or named as one: a damaged recording is then told so),
    or a rosbag2 folder (metadata.yaml, or MCAP files), whatever the folder is called (`ros2 bag record -o
    drive.mcap` makes a folder)."""
    path = Path(spec)
    if path.is_file():
        return path.suffix.lower() in BAG_SUFFIXES or file_kind(path) is not None
    return path.is_dir() and ((path / "metadata.yaml").is_file() or any(path.glob("*.mcap")))


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


_LISTINGS: dict[tuple, list[Topic]] = {}  # Bag.topics, by path and the state of its files


class Bag:
    """One recording; reads are streamed (a truncated MCAP file yields its complete chunks, then BagError)."""

    def __init__(self, spec: str, max_pixels: int = MAX_IMAGE_PIXELS):
        self.path = Path(spec)
        self.max_record_bytes = max_record_bytes(max_pixels)  # a message or a decompressed chunk
        if not self.path.exists():
            raise BagError(f"source {spec}: no such file or folder")
        if self.path.is_dir():  # a rosbag2 folder: its one MCAP file, else its storage through rosbags
            mcaps = sorted(p for p in self.path.glob("*.mcap") if p.is_file())
            self.mcap = mcaps[0] if len(mcaps) == 1 else None
        else:
            kind = file_kind(self.path)
            self.mcap = self.path if kind == "mcap" or (kind is None and self.path.suffix.lower() == ".mcap") else None
        self.typestore = _typestore()
        self._topics: list[Topic] | None = None

    # ------------------------------------------------------------------------------------------ listing
    def topics(self) -> list[Topic]:
        """The recording's topics with types and counts, listed once per state of its files: `avssm run` checks
        the topics before any work and each source opens the recording again, and listing a recording without a
        summary (a truncated MCAP file) reads all of it."""
        if self._topics is None:
            files = [self.path] if self.path.is_file() else sorted(p for p in self.path.iterdir() if p.is_file())
            key = (str(self.path.resolve()), *((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files))
            if key not in _LISTINGS:
                _LISTINGS[key] = self._mcap_topics() if self.mcap else self._rosbags_topics()
            self._topics = _LISTINGS[key]
        return self._topics

    def image_topics(self) -> list[Topic]:
        return [t for t in self.topics() if t.msgtype in (IMAGE, COMPRESSED)]

    def _mcap_topics(self) -> list[Topic]:
        from mcap.reader import make_reader

        try:
            with open(self.mcap, "rb") as f:
                summary = make_reader(f, record_size_limit=self._record_limit(f)).get_summary()
        except Exception:  # noqa: BLE001 - no summary (a truncated recording): count by reading
            summary = None
        if summary is not None and summary.statistics is not None:
            counts = summary.statistics.channel_message_counts
            return [Topic(c.topic, summary.schemas[c.schema_id].name if c.schema_id in summary.schemas else "",
                          counts.get(c.id, 0)) for c in summary.channels.values()]
        found: dict[str, Topic] = {}
        try:
            for schema, channel, _ in self._mcap_stream():
                topic = found.setdefault(channel.topic, Topic(channel.topic, schema.name if schema else "", 0))
                topic.count += 1
        except BagError:
            pass  # listed as far as it could be read
        return list(found.values())

    def _rosbags_topics(self) -> list[Topic]:
        with self._any_reader() as reader:
            counts: dict[str, Topic] = {}
            for c in reader.connections:
                topic = counts.setdefault(c.topic, Topic(c.topic, c.msgtype, 0))
                topic.count += c.msgcount
            return list(counts.values())

    # ------------------------------------------------------------------------------------------ reading
    def messages(self, topics: list[str]) -> Iterator[Message]:
        """The messages of ``topics`` in recording order; BagError where the recording cannot be read further."""
        if self.mcap:
            for schema, channel, message in self._mcap_stream():
                if channel.topic in topics:
                    try:
                        msg = self.typestore.deserialize_cdr(message.data, schema.name)
                    except Exception as e:  # noqa: BLE001 - a corrupt message
                        raise BagError(f"message on {channel.topic} at {message.log_time} ns cannot be decoded: "
                                       f"{type(e).__name__}: {e}") from None
                    yield Message(channel.topic, message.log_time, msg)
            return
        with self._any_reader() as reader:
            connections = [c for c in reader.connections if c.topic in topics]
            try:
                for connection, log_time, raw in reader.messages(connections=connections):
                    yield Message(connection.topic, log_time, reader.deserialize(raw, connection.msgtype))
            except Exception as e:  # noqa: BLE001 - storage errors mid-read
                raise BagError(f"{type(e).__name__}: {e}") from None

    def _mcap_stream(self):
        """(schema, channel, message) in file order, not sorted by log time (sorting would read the whole file
        before the first frame). Records are read one at a time: a chunk is decompressed only once its declared
        size is known to be at most ``max_record_bytes``, and no more than that is ever decompressed."""
        from mcap.exceptions import McapError
        from mcap.records import Channel, Chunk, Message, Schema
        from mcap.stream_reader import StreamReader

        schemas: dict = {}
        channels: dict = {}
        with open(self.mcap, "rb") as f:
            limit = self._record_limit(f)
            try:
                reader = StreamReader(f, validate_crcs=True, emit_chunks=True, record_size_limit=limit)
                for record in reader.records:
                    for item in self._chunk_records(record) if isinstance(record, Chunk) else (record,):
                        if isinstance(item, Schema):
                            schemas[item.id] = item
                        elif isinstance(item, Channel):
                            channels[item.id] = item
                        elif isinstance(item, Message):
                            if item.channel_id not in channels:
                                raise McapError(f"a message on channel {item.channel_id}, which has no Channel record")
                            channel = channels[item.channel_id]
                            yield schemas.get(channel.schema_id), channel, item
            except (McapError, EOFError, ValueError, OSError, RuntimeError, struct.error) as e:
                if type(e).__name__ == "RecordLengthLimitExceeded":
                    reason = (f"a record is longer than {limit} bytes (the file's size, or the "
                              f"{self.max_record_bytes} bytes avssm reads; --max-image-pixels raises that)")
                elif type(e).__name__ == "EndOfFile":
                    reason = "the file ends early (truncated recording)"
                else:
                    reason = f"{type(e).__name__}: {e}"
                raise BagError(f"{self.mcap.name}: cannot be read further at byte {f.tell()}: {reason}") from None

    def _record_limit(self, f) -> int:
        """The longest record read from the open file ``f``: max_record_bytes, and never more than the file."""
        return min(self.max_record_bytes, os.fstat(f.fileno()).st_size)

    def _chunk_records(self, chunk):
        """The records of an MCAP chunk, decompressed to at most ``max_record_bytes`` and read one by one."""
        from mcap.data_stream import ReadDataStream
        from mcap.exceptions import McapError
        from mcap.records import Channel, Message, Opcode, Schema

        limit = self.max_record_bytes
        if chunk.uncompressed_size > limit:
            raise McapError(f"a chunk declares {chunk.uncompressed_size} bytes of data, more than the {limit} avssm "
                            "decompresses (--max-image-pixels raises it)")
        data = _decompress(chunk.compression, chunk.data, chunk.uncompressed_size)
        if len(data) != chunk.uncompressed_size:
            raise McapError(f"a chunk holds other than the {chunk.uncompressed_size} bytes it declares")
        if chunk.uncompressed_crc and zlib.crc32(data) != chunk.uncompressed_crc:
            raise McapError("a chunk's data does not match its CRC")
        stream = ReadDataStream(io.BytesIO(data))
        while stream.count < len(data):
            opcode, length = stream.read1(), stream.read8()
            if length > len(data) - stream.count:
                raise McapError("a record runs past the end of its chunk")
            if opcode == Opcode.MESSAGE and length >= 22:
                yield Message.read(stream, length)
                continue
            body = ReadDataStream(io.BytesIO(stream.read(length)))
            if opcode == Opcode.CHANNEL:
                yield Channel.read(body)
            elif opcode == Opcode.SCHEMA:
                yield Schema.read(body)

    @contextlib.contextmanager
    def _any_reader(self):
        from rosbags.highlevel import AnyReader

        reader = AnyReader([self.path], default_typestore=self.typestore)
        try:
            reader.open()
        except Exception as e:  # noqa: BLE001 - rosbags' errors for unreadable recordings
            raise BagError(f"source {self.path}: cannot be read as a recording: {e}") from None
        try:
            yield reader
        finally:
            reader.close()


def _decompress(compression: str, data: bytes, size: int) -> bytes:
    """A chunk's data, of which no more than ``size`` + 1 bytes are ever produced (whatever its frames claim)."""
    if compression == "":
        return bytes(data)
    if compression == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
    elif compression == "lz4":
        import lz4.frame

        reader = lz4.frame.LZ4FrameFile(io.BytesIO(data), mode="rb")
    else:
        raise ValueError(f"chunk compression '{compression}' is not zstd, lz4 or none")
    out = bytearray()
    with reader:
        while len(out) <= size and (block := reader.read(min(1 << 20, size + 1 - len(out)))):
            out += block
    return bytes(out)


def decode_image(msg, topic: str, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A sensor_msgs Image or CompressedImage as uint8 BGR (H, W, 3); BagError naming the topic otherwise."""
    if hasattr(msg, "format"):  # CompressedImage
        data = msg.data.tobytes() if isinstance(msg.data, np.ndarray) else bytes(msg.data)
        return decode_image_bytes(data, f"topic {topic}: compressed image ('{msg.format}')", max_pixels)
    check_pixels(int(msg.height), int(msg.width), f"topic {topic}", max_pixels)
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, np.uint8)
    encoding = msg.encoding.lower()
    if encoding not in ENCODINGS:
        raise BagError(f"topic {topic}: image encoding '{msg.encoding}' is not supported "
                       f"({', '.join(ENCODINGS)}, or CompressedImage)")
    channels = {"bgr8": 3, "rgb8": 3, "bgra8": 4, "rgba8": 4}.get(encoding, 1)
    if msg.step < msg.width * channels or data.size < msg.step * msg.height:
        raise BagError(f"topic {topic}: image {msg.width}x{msg.height} {encoding} has step {msg.step} and "
                       f"{data.size} bytes: truncated or inconsistent message")
    rows = data[:msg.step * msg.height].reshape(msg.height, msg.step)[:, :msg.width * channels]
    pixels = rows.reshape(msg.height, msg.width, channels)
    if encoding == "bgr8":
        return np.ascontiguousarray(pixels)
    if encoding in BAYER:
        return cv2.cvtColor(np.ascontiguousarray(pixels[:, :, 0]), BAYER[encoding])
    code = {"rgb8": cv2.COLOR_RGB2BGR, "mono8": cv2.COLOR_GRAY2BGR, "bgra8": cv2.COLOR_BGRA2BGR,
            "rgba8": cv2.COLOR_RGBA2BGR}[encoding]
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)


def topic_choice_error(spec: str, bag: Bag, asked: list[str]) -> BagError:
    """The one error for a missing or unknown --topic: the recording's image topics, one line each."""
    images = bag.image_topics()
    listed = "\n".join(f"  {t.line()}" for t in images) or "  (none: no sensor_msgs Image or CompressedImage topic)"
    unknown = [t for t in asked if t not in {i.name for i in images}]
    head = (f"--topic {', '.join(unknown)}: not an image topic of {spec}" if unknown
            else f"source {spec}: choose an image topic with --topic")
    return BagError(f"{head}; its image topics:\n{listed}")


def open_topics(spec: str, topics: list[str], max_pixels: int = MAX_IMAGE_PIXELS) -> Bag:
    """The recording at ``spec``, once every one of ``topics`` is one of its image topics (else the listing)."""
    bag = Bag(spec, max_pixels)
    known = {t.name for t in bag.image_topics()}
    if not topics or any(t not in known for t in topics):
        raise topic_choice_error(spec, bag, topics)
    return bag
