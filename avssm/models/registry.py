"""Model registry: ``@register_model`` on a constructor, ``create_model(name)`` to build it."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable

import torch.nn as nn

from avssm.errors import UnknownModelError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a constructor ``fn(num_classes=..., **overrides) -> nn.Module`` under its name."""
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def model_constructor(name: str) -> Callable[..., nn.Module]:
    if name not in _MODELS:
        raise UnknownModelError(f"unknown model '{name}'; valid models: {', '.join(list_models())}")
    return _MODELS[name]


def create_model(name: str, num_classes: int | None = None, checkpoint=None, **overrides) -> nn.Module:
    """Build a registered model; optionally load a checkpoint (path or state dict) into it.

    ``num_classes`` defaults to the model's own (1000 for classifiers, the class list for detectors).
    ``overrides`` replace fields of the model's config dataclass (e.g. ``depths=(1, 1, 1, 1)``).
    """
    constructor = model_constructor(name)
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    source = None
    if checkpoint is not None and not isinstance(checkpoint, Mapping):
        from avssm.models.checkpoint import read_checkpoint_file

        source = f"checkpoint {checkpoint}"
        checkpoint = read_checkpoint_file(checkpoint)
        saved = checkpoint.get("avssm")  # written by `avssm train`: the config the weights belong to
        if isinstance(saved, Mapping) and saved.get("model") == name:
            overrides = {**saved.get("overrides", {}), **overrides}
    model = constructor(**overrides)
    model.model_name = name
    if checkpoint is not None:
        from avssm.models.checkpoint import load_checkpoint

        load_checkpoint(model, checkpoint, source=source)
    return model


def describe_models() -> list[dict]:
    """Name, task and parameter count of every registered model (built on the meta device: no memory)."""
    import torch

    rows = []
    for name in list_models():
        with torch.device("meta"):
            model = model_constructor(name)()
        rows.append({
            "name": name,
            "task": "detection" if hasattr(model, "backbone") else "classification",
            "family": type(getattr(model, "backbone", model)).__name__,
            "params": sum(p.numel() for p in model.parameters()),
        })
    return rows
