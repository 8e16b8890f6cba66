"""Runtime: frame sources, inference backends, the run loop and its latency/memory report.

Imports without PyTorch (registered model names run on the PyTorch backend, which the torch side registers:
avssm.export.torch_backend, loaded by avssm.app.open_model). Names are loaded on first use, so importing
``avssm.runtime.config`` (the CLI does) costs nothing.

    from avssm.runtime import RunConfig, load_backend, run
    report = run(load_backend("model.onnx"), "clip.mp4", RunConfig(max_frames=50))
"""
import importlib

_EXPORTS = {"Backend": "backends", "load_backend": "backends", "register_backend": "backends",
            "RunConfig": "config", "postprocess": "pipeline", "run": "pipeline", "format_table": "report",
            "FrameSource": "sources"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"avssm.runtime.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'avssm.runtime' has no attribute '{name}'")
