"""The PyTorch backend: a registered model name (``vim_tiny_det``) run by PyTorch behind the runtime's
Backend interface. Importing this module registers it with avssm.runtime as "torch"; the runtime itself
never imports PyTorch.

    import avssm.export.torch_backend  # noqa: F401 - registers "torch"
    backend = load_backend("vim_tiny_det", "torch", checkpoint="det.pth")
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from avssm.export.onnx_export import build_metadata
from avssm.malloc import keep_freed_memory
from avssm.models import create_model
from avssm.runtime.backends import Backend, BackendError, register_backend


class TorchBackend(Backend):
    def __init__(self, model_name: str, checkpoint: str | None = None, device: str = "cpu", reason: str = ""):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device {device}: PyTorch sees no CUDA GPU")
        if device == "cpu":
            keep_freed_memory()  # every frame re-faulted its activations in, ~1 s per 1080p frame (avssm/malloc.py)
        self.model = create_model(model_name, checkpoint=checkpoint).eval().to(device)
        if not hasattr(self.model, "class_names"):
            raise BackendError(f"model '{model_name}' is a classifier; `avssm run` needs a detector (*_det)")
        meta = build_metadata(self.model, model_name, (0, 0), "pytorch", "fp32", 0, True,
                              weights=Path(checkpoint).name if checkpoint else "random")
        super().__init__("torch", device, meta, "images", np.float32, None, reason,
                         {"torch": torch.__version__, "model": model_name, "checkpoint": checkpoint}, None)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            boxes, scores = self.model(torch.from_numpy(images).to(self.device))
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
        return {"boxes": boxes.cpu().numpy(), "scores": scores.cpu().numpy()}

    def memory(self) -> dict:
        if self.device.startswith("cuda"):
            return {"torch_peak_allocated_mib": torch.cuda.max_memory_allocated() / 2**20}
        return {}


def _open(model, *, checkpoint=None, device="cpu", reason="", **_):
    return TorchBackend(str(model), checkpoint, device, reason=reason)


register_backend("torch", _open)
