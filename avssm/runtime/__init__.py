"""Runtime: frame sources, inference backends, the run loop and its latency/memory report.

Imports without PyTorch (registered model names run on the PyTorch backend, which the torch side registers:
avssm.export.torch_backend, loaded by avssm.app.open_model).

    from avssm.runtime import RunConfig, load_backend, run
    report = run(load_backend("model.onnx"), "clip.mp4", RunConfig(max_frames=50))
"""
from avssm.runtime.backends import Backend, load_backend, register_backend
from avssm.runtime.pipeline import RunConfig, postprocess, run
from avssm.runtime.report import format_table
from avssm.runtime.sources import FrameSource

__all__ = ["Backend", "FrameSource", "RunConfig", "format_table", "load_backend", "postprocess", "register_backend",
           "run"]
