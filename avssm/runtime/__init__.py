"""Runtime: frame sources, inference backends, the run loop and its latency/memory report.

Imports without PyTorch (only the torch backend and building the default model need it).

    from avssm.runtime import run
    report = run("model.onnx", source="clip.mp4")
"""
from avssm.runtime.backends import Backend, load_backend
from avssm.runtime.pipeline import default_model_file, default_sample_clip, postprocess, run
from avssm.runtime.report import format_table
from avssm.runtime.sources import FrameSource

__all__ = ["Backend", "FrameSource", "default_model_file", "default_sample_clip", "format_table", "load_backend",
           "postprocess", "run"]
