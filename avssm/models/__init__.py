"""Models: VMamba and Vim classifiers/backbones and the detectors built on them.

    from avssm.models import create_model, list_models, load_checkpoint
    model = create_model("vmamba_tiny", checkpoint="vssm1_tiny_0230s_ckpt_epoch_264.pth")
"""
from avssm.models import detector, vim, vit, vmamba  # noqa: F401  (registers the models)
from avssm.models.checkpoint import load_checkpoint
from avssm.models.registry import create_model, describe_models, list_models, register_model

__all__ = ["create_model", "describe_models", "list_models", "load_checkpoint", "register_model"]
