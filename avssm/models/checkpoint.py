"""Loading checkpoints: the official VMamba / Vim release files as they are, and avssm's own.

Safety: files are read through avssm.models.safe_pickle, which admits only tensors, containers and
the two configuration classes the official files pickle (VMamba: a yacs ``CfgNode``, read into a
plain dict; Vim: an ``argparse.Namespace``), by exact name, checked in the opcode stream before
unpickling and again while unpickling; any other pickled object is refused, so no pickled code runs.

What is accepted:
* nesting under ``model`` (default), ``model_ema`` (``ema=True``), ``state_dict``, or a bare state dict;
* a ``module.`` prefix (DataParallel);
* VMamba's legacy v0 names (``patch_embed.proj/norm``, ``ln_1``, ``self_attention``, top-level
  ``norm``/``head``);
* 1x1 weights stored 2-D (out, in) or 4-D (out, in, 1, 1);
* an ImageNet checkpoint for a detector: it goes into ``model.backbone`` and the classifier is left
  out (the detection heads start fresh).
Missing or unexpected keys and shape mismatches are reported by name with both shapes.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from avssm.errors import CheckpointError
from avssm.models.safe_pickle import PickledConfig, RefusedCheckpointError, load_checkpoint_file

__all__ = ["PickledConfig", "extract_state_dict", "load_checkpoint", "load_state_dict_checked", "read_checkpoint_file"]


def read_checkpoint_file(path: str | Path) -> Mapping:
    """Read a checkpoint file without running pickled code; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        obj = load_checkpoint_file(path)
    except RefusedCheckpointError as e:
        raise CheckpointError(f"checkpoint {path}: refused to load: {e}; nothing in it was run") from None
    except Exception as e:  # torch.load fails in many ways on a file that is not a checkpoint
        raise CheckpointError(f"checkpoint {path}: not a PyTorch checkpoint ({type(e).__name__})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path}: holds a {type(obj).__name__}, not a state dict")
    return obj


def extract_state_dict(obj: Mapping, ema: bool = False, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the state dict inside a training checkpoint."""
    keys = ["model_ema", "model"] if ema else ["model", "state_dict", "model_ema"]
    for key in keys:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    else:
        if ema:
            raise CheckpointError(f"{source}: has no 'model_ema' entry")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{source}: contains no tensors (top-level keys: {', '.join(map(str, list(obj)[:8]))})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _fit_shape(value: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Accept a 1x1 weight stored 4-D where 2-D is expected (and the reverse)."""
    if value.shape != shape and value.numel() == shape.numel() and value.dim() in (2, 4) and len(shape) in (2, 4):
        if value.shape[:2] == shape[:2]:
            return value.reshape(shape)
    return value


def _format_mismatch(missing, unexpected, mismatched, source) -> str:
    parts = []
    if mismatched:
        k, got, want = mismatched[0]
        parts.append(f"'{k}' has shape {tuple(got)} in the checkpoint but {tuple(want)} in the model"
                     + (f" (+{len(mismatched) - 1} more mismatches)" if len(mismatched) > 1 else ""))
    if missing:
        parts.append(f"missing '{missing[0]}'" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
    if unexpected:
        parts.append(f"unexpected '{unexpected[0]}'" + (f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    return f"{source} does not fit the model: " + "; ".join(parts)


def load_state_dict_checked(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True,
                            source: str = "checkpoint") -> dict[str, list]:
    """Load with full reporting. Returns {'missing', 'unexpected', 'mismatched'}; raises if strict."""
    own = model.state_dict()
    state = {k: _fit_shape(v, own[k].shape) if k in own else v for k, v in state.items()}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [(k, state[k].shape, own[k].shape) for k in state if k in own and state[k].shape != own[k].shape]
    if strict and (missing or unexpected or mismatched):
        raise CheckpointError(_format_mismatch(missing, unexpected, mismatched, source))
    loadable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(loadable, strict=False)
    return {"missing": missing, "unexpected": unexpected, "mismatched": mismatched}


def load_checkpoint(model: nn.Module, path_or_state_dict, strict: bool = True, ema: bool = False,
                    source: str | None = None) -> dict[str, list]:
    """Load an official or avssm checkpoint (a path or a dict) into ``model``.

    For a detector given a classification checkpoint, the weights go into ``model.backbone`` and the
    classifier keys are ignored. Returns the load report (missing / unexpected / mismatched keys).
    """
    if isinstance(path_or_state_dict, Mapping):
        source, obj = source or "checkpoint", path_or_state_dict
    else:
        source, obj = f"checkpoint {path_or_state_dict}", read_checkpoint_file(path_or_state_dict)
    state = extract_state_dict(obj, ema=ema, source=source)

    target = model
    backbone = getattr(model, "backbone", None)
    if backbone is not None and not any(k.startswith("backbone.") for k in state):
        # A classification checkpoint for a detector: fill the backbone, drop the classifier.
        target = backbone
    if hasattr(target, "checkpoint_filter"):  # the model's own renames (VMamba's legacy v0 names)
        state = target.checkpoint_filter(state)
    if target is not model:  # a detector's backbone has no classifier to fill
        state = {k: v for k, v in state.items() if not k.startswith(("classifier.", "head."))}
    return load_state_dict_checked(target, state, strict=strict, source=source)
