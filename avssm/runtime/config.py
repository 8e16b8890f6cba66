"""What a run is asked to do: `avssm run`'s options as a dataclass (light: the CLI reads its defaults at start)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avssm.errors import AvssmError
from avssm.outputs import check_output, check_output_dir
from avssm.images import MAX_IMAGE_PIXELS


@dataclass
class RunConfig:
    """How a run reads, infers and writes (`avssm run`'s flags take their defaults from here)."""

    camera: bool = False                     # ``source`` is a camera (index, /dev/videoN, gst:...)
    resize: tuple[int, int] | None = None    # (H, W); None keeps full resolution
    drop: str | None = None                  # "oldest" or "none"; None: oldest for cameras/streams, none for files
    realtime: bool = False                   # play a file at its own frame rate, like a camera
    max_frames: int | None = None            # stop after this many timed frames
    warmup: int = 1                          # frames run before timing starts
    score_threshold: float = 0.3
    iou_threshold: float = 0.6
    show: bool = False                       # a window with boxes and live FPS
    save_video: str | None = None            # write the frames with boxes here
    jsonl: str | None = None                 # one line of detections per frame here
    topics: tuple[str, ...] = ()             # image topics of a recording (rosbag2 / MCAP / ROS 1 bag) to run on
    record: str | None = None                # detections (vision_msgs/Detection2DArray) to this MCAP file
    record_images: bool = False              # and the images
    sync_tolerance_ms: float | None = None   # several topics of a recording: a batch's stamps lie within this
    view_port: int | None = None             # serve the annotated stream for the Foxglove app on this port
    max_image_pixels: int = MAX_IMAGE_PIXELS  # larger images and recorded frames are refused undecoded
    save_outputs: str | None = None          # each step's raw model outputs, one .npz per step, in this new folder

    def check(self, source: str, inputs: dict | None = None) -> None:
        """Refuse, before any work, values out of range and outputs that cannot be written or are inputs."""
        if self.max_frames is not None and self.max_frames < 1:
            raise AvssmError(f"--max-frames {self.max_frames}: must be at least 1")
        if self.max_image_pixels < 1:
            raise AvssmError(f"--max-image-pixels {self.max_image_pixels}: must be at least 1")
        if self.warmup < 0:
            raise AvssmError(f"--warmup {self.warmup}: must be 0 or more")
        for flag, value in (("--score-threshold", self.score_threshold), ("--iou-threshold", self.iou_threshold)):
            if not 0.0 <= value <= 1.0:
                raise AvssmError(f"{flag} {value}: must be between 0 and 1")
        if not self.camera:  # a recording's topics are checked (and listed) before any work
            from avssm.runtime.bags import is_bag, open_topics

            if is_bag(source):
                open_topics(source, list(self.topics), self.max_image_pixels)
            elif self.topics:
                raise AvssmError(f"--topic: source {source} is not a recording (.mcap, .db3, .bag or a rosbag2 folder)")
        inputs = {"--source": None if self.camera else source, **(inputs or {})}
        if self.sync_tolerance_ms is not None and self.sync_tolerance_ms < 0:
            raise AvssmError(f"--sync-tolerance {self.sync_tolerance_ms}: must be 0 or more (milliseconds)")
        if self.view_port is not None and not 0 <= self.view_port <= 65535:
            raise AvssmError(f"--view-port {self.view_port}: must be 0 to 65535")
        if self.record_images and not self.record:
            raise AvssmError("--record-images: needs --record FILE.mcap")
        if self.record and not self.record.endswith(".mcap"):
            raise AvssmError(f"--record {self.record}: give a .mcap file")
        for flag, path in (("--save-video", self.save_video), ("--jsonl", self.jsonl), ("--record", self.record)):
            if path:
                check_output(path, flag, inputs=inputs)
        if self.save_outputs:
            check_outputs_folder(self.save_outputs)


def check_outputs_folder(folder: str) -> None:
    """``--save-outputs``: a new or empty folder that can be written (nothing in it is overwritten)."""
    path = Path(folder)
    if path.is_dir() and any(path.iterdir()):
        raise AvssmError(f"--save-outputs {folder}: is not empty; give a new or empty folder (nothing in it is "
                         "overwritten)")
    check_output_dir(path, "--save-outputs")
