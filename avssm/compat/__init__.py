"""Stand-ins for other projects' compiled kernel modules, so that code written against them runs unmodified where
they are not built (any CPU, a GPU machine without the extension), with gradients, through avssm's scan.

    from avssm import compat
    compat.install()            # from now on `import selective_scan_cuda` finds avssm's stand-in
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn   # runs on CPU tensors

A stand-in is served only when the real module cannot be found: ``install`` appends a finder at the end of
``sys.meta_path``, after Python's own. Each stand-in returns exactly what the real module returns (shapes, dtypes,
the per-chunk states callers read), so the calling code's autograd.Functions run unchanged.

| module | stand-in | covered |
|---|---|---|
| ``selective_scan_cuda`` (mamba_ssm 1.x / 2.x, Vim's bundled 1.1.1, VMamba's ``csms6s`` fallback) | :mod:`avssm.compat.selective_scan_cuda` | ``fwd``, ``bwd``, real A |
| ``selective_scan_cuda_oflex`` / ``_core`` (the official VMamba code's ``csms6s``) | :mod:`avssm.compat.selective_scan_cuda_oflex` | ``fwd``, ``bwd`` |
| ``causal_conv1d_cuda`` (causal-conv1d 1.0 to 1.6) | :mod:`avssm.compat.causal_conv1d_cuda` | fwd, bwd, update; no ``seq_idx`` |
| ``causal_conv1d`` and ``causal_conv1d.cpp_functions``, where the package is not installed | :mod:`avssm.compat.causal_conv1d` | ``causal_conv1d_fn``, ``causal_conv1d_update``, the ``*_function`` calls |
| mamba_ssm's Triton ``layer_norm_fn`` / ``rms_norm_fn`` / ``RMSNorm`` on CPU tensors and under export (patched) | :mod:`avssm.compat.layer_norm` | the fused residual add and one norm |
| the official VMamba code's ``csm_triton.cross_scan_fn`` / ``cross_merge_fn`` on CPU tensors and under export (patched) | :mod:`avssm.compat.vmamba` | every ``scans`` / layout flag the torch classes take |
| the official VMamba code's ``vmamba.SS2Dv2.forward_corev2`` under export (patched): its cross-2d scan as one fused node | :mod:`avssm.compat.vmamba` | ``scans=0``; else version 1 nodes |
| Vim's bundled ``mamba_simple.Mamba`` with ``bimamba_type="v2"`` under export (patched): one bidirectional node | :mod:`avssm.compat.vim` | the fast path; else as written |
| mamba_ssm's ``selective_state_update`` (the blocks' step-by-step decoding) on CPU tensors (patched) | :mod:`avssm.compat.state_update` | with and without heads, ``state_batch_indices``; not exported |
| mamba_ssm 2.x's Mamba2: ``mamba_chunk_scan_combined``, ``mamba_split_conv1d_scan_combined``, gated ``rmsnorm_fn`` (patched) | :mod:`avssm.compat.ssd` | whole sequences from a zero state |

Export: the exporter cannot inline mamba_ssm's autograd.Functions (they have no ONNX symbolic, and their einops
calls break inlining), so ``install`` also adapts ``mamba_ssm.ops.selective_scan_interface`` when it is imported:
under ``torch.onnx.export`` its ``SelectiveScanFn`` and ``MambaInnerFn`` compute through avssm's scan, one
SelectiveScan node per scan (:mod:`avssm.compat.mamba_ssm`); outside export they run unchanged.

This package sits above ``avssm.ops`` and below ``avssm.export``; ops, graph and runtime never import it.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

# module name another project imports -> the avssm module that stands in for it
STAND_INS = {
    "selective_scan_cuda": "avssm.compat.selective_scan_cuda",
    "causal_conv1d_cuda": "avssm.compat.causal_conv1d_cuda",
    "causal_conv1d": "avssm.compat.causal_conv1d",
    "causal_conv1d.cpp_functions": "avssm.compat.causal_conv1d_functions",
    "selective_scan_cuda_oflex": "avssm.compat.selective_scan_cuda_oflex",   # the official VMamba code
    "selective_scan_cuda_core": "avssm.compat.selective_scan_cuda_core",
}


class _StandInLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):
        pass  # the avssm module is imported (and run) by create_module


class _StandInFinder(importlib.abc.MetaPathFinder):
    """Answers only for the names in STAND_INS, and only after every other finder found nothing."""

    def find_spec(self, name, path=None, target=None):
        if name not in STAND_INS:
            return None
        return importlib.machinery.ModuleSpec(name, _StandInLoader(STAND_INS[name]), origin=f"avssm ({STAND_INS[name]})")


# module name -> "avssm module:function" that adapts it once it is imported (for export: see mamba_ssm.py)
PATCHES = {"mamba_ssm.ops.selective_scan_interface": "avssm.compat.mamba_ssm:patch_selective_scan_interface",
           "mamba_ssm.ops.triton.layer_norm": "avssm.compat.layer_norm:patch_layer_norm",   # mamba_ssm 2.x
           "mamba_ssm.ops.triton.layernorm": "avssm.compat.layer_norm:patch_layer_norm",    # 1.x, Vim's 1.1.1
           "mamba_ssm.ops.triton.layernorm_gated": "avssm.compat.ssd:patch_layernorm_gated",
           "mamba_ssm.ops.triton.ssd_combined": "avssm.compat.ssd:patch_ssd_combined",
           "mamba_ssm.ops.triton.selective_state_update": "avssm.compat.state_update:patch_selective_state_update",
           "mamba_ssm.modules.mamba_simple": "avssm.compat.vim:patch_mamba_simple"}      # Vim's bimamba v2


# last part of a module name -> patch: code the user copies into their own project keeps its file name, not its
# package (the official VMamba code is imported as models.csm_triton, classification.models.csm_triton, ...)
PATCHES_BY_FILE = {"csm_triton": "avssm.compat.vmamba:patch_csm_triton", "vmamba": "avssm.compat.vmamba:patch_vmamba"}


def _patch_for(name: str) -> str | None:
    return PATCHES.get(name) or PATCHES_BY_FILE.get(name.rsplit(".", 1)[-1])


def _apply_patch(name: str, module) -> None:
    target, function = _patch_for(name).split(":")
    getattr(importlib.import_module(target), function)(module)


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _apply_patch(module.__name__, module)


class _PatchingFinder(importlib.abc.MetaPathFinder):
    """First in ``sys.meta_path`` for the names in PATCHES only: finds them as Python would, then patches them
    once they have run."""

    def find_spec(self, name, path=None, target=None):
        if _patch_for(name) is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


def on_compiled_kernels(*tensors) -> bool:
    """Whether the other project's own kernels (CUDA, Triton) can take this call: a CUDA tensor, not exporting.
    The patched functions keep to their original then, and take avssm's PyTorch otherwise."""
    import torch

    return not torch.onnx.is_in_onnx_export() and any(isinstance(t, torch.Tensor) and t.is_cuda for t in tensors)


def install() -> None:
    """Serve avssm's stand-ins for the compiled modules in STAND_INS that are not installed, and adapt the modules
    in PATCHES for export when they are imported (or now, if they were). Idempotent."""
    if not any(isinstance(f, _StandInFinder) for f in sys.meta_path):
        sys.meta_path.append(_StandInFinder())
    if not any(isinstance(f, _PatchingFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchingFinder())
        for name, module in list(sys.modules.items()):
            if module is not None and _patch_for(name) is not None:
                _apply_patch(name, module)


def installed() -> bool:
    return any(isinstance(f, _StandInFinder) for f in sys.meta_path)
