"""The application layer: what `avssm run` and `avssm eval` add above the runtime and the torch side.

* the shipped default detector and sample clip (the default model is exported into the cache once);
* :func:`open_model`: the runtime's ``load_backend``, with the PyTorch backend loaded first when the model
  is a registered name, so the runtime itself never imports PyTorch.
"""
from __future__ import annotations

from pathlib import Path

from avssm import native
from avssm.errors import AvssmError
from avssm.runtime.backends import Backend, load_backend, runs_on_pytorch


def open_model(model: str, backend: str = "auto", *, checkpoint: str | None = None, device: str = "cpu",
               plugin_lib: str | None = None) -> Backend:
    """Open ``model`` (an exported file, an engine, or a registered model name) on ``backend``."""
    if runs_on_pytorch(model, backend):
        import avssm.export.torch_backend  # noqa: F401 - registers the "torch" backend

    return load_backend(model, backend, checkpoint=checkpoint, device=device, plugin_lib=plugin_lib)


_DATA = Path(__file__).resolve().parent / "data"
DEFAULT_MODEL = "vmamba_nano_det"
# Trained on generated road scenes (`avssm generate-data`); the README gives the command that reproduces it.
DEFAULT_CHECKPOINT = _DATA / "vmamba_nano_det_roads.pth"


# Said wherever the user meets the shipped weights: the README, `avssm models`, the report of a run with them.
SHIPPED_WEIGHTS_NOTE = ("the shipped vmamba_nano_det weights were trained on procedural road scenes only: a "
                        "demonstration of the pipeline, not a detector for real roads; train on your data with "
                        "avssm train (docs/training.md)")


def shipped_weights_note(report_model: dict) -> str | None:
    """SHIPPED_WEIGHTS_NOTE when a run's model (the report's ``model``) carries the shipped weights."""
    return SHIPPED_WEIGHTS_NOTE if report_model.get("weights") == DEFAULT_CHECKPOINT.name else None


def model_rows() -> list[dict]:
    """avssm.models.describe_models(): name, task, family and parameters of every registered model. Building
    them takes seconds, so the rows are kept in the cache, named by the models' source; a cache hit does not
    import PyTorch."""
    import hashlib
    import json

    models = Path(__file__).resolve().parent / "models"
    digest = hashlib.sha256()
    for source in sorted(models.rglob("*.py")):
        digest.update(source.read_bytes())
    path = native.cache_dir() / "models" / f"registry_{digest.hexdigest()[:12]}.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(rows, list) and all(isinstance(r, dict) and {"name", "task", "family", "params"} <= set(r)
                                          for r in rows):
            return rows
    except (OSError, ValueError):
        pass  # not written yet, or unreadable: build the rows again
    from avssm.models import describe_models
    from avssm.outputs import atomic_output

    rows = describe_models()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(rows), encoding="utf-8")
    except OSError:
        pass  # a read-only cache: the rows are still right, only not kept
    return rows


def default_sample_clip() -> Path:
    """The short road clip shipped with the package (generated scenes the default detector never saw)."""
    return _DATA / "sample_clip.mp4"


def default_model_file(progress=None) -> Path:
    """The default detector (DEFAULT_MODEL with the shipped DEFAULT_CHECKPOINT) as a plugin-form, dynamic-shape
    ONNX file, exported once into the cache. The backends run its SelectiveScan nodes with avssm's op on the CPU
    and TensorRT plugin, and lower them to standard ops elsewhere (avssm.runtime.backends).

    Building it needs PyTorch (only the first time); afterwards the runtime uses the file alone. The cached
    file is named by the checkpoint and by the code that writes the graph (avssm/graph, models, ops, export), so a
    new checkpoint or a changed exporter is exported again instead of an old file being reused.
    """
    import hashlib
    import os
    import tempfile

    package = Path(__file__).resolve().parent
    digest = hashlib.sha256(DEFAULT_CHECKPOINT.read_bytes())
    for source in sorted(p for sub in ("graph", "models", "ops", "export") for p in (package / sub).rglob("*.py")):
        digest.update(source.read_bytes())
    cache = native.cache_dir() / "models"
    path = cache / f"{DEFAULT_MODEL}_{digest.hexdigest()[:12]}_plugin_dynamic.onnx"
    if path.is_file():
        return path
    try:
        from avssm.export import export_onnx
        import torch  # noqa: F401
    except ImportError:
        raise AvssmError("no --model given and PyTorch is not installed to build the default detector; "
                         "pass --model FILE.onnx (from `avssm export`)") from None
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:  # an interrupted export leaves no file to reuse
        partial = Path(tmp) / path.name
        export_onnx(DEFAULT_MODEL, partial, checkpoint=str(DEFAULT_CHECKPOINT), input_size=(1080, 1920),
                    dynamic=True, scan_op="plugin", progress=progress)
        os.replace(partial, path)
    return path
