"""What exporting code written against mamba_ssm needs: its autograd.Functions have no ONNX ``symbolic``, and the
exporter cannot inline one that calls another (avssm's scan node). While ``torch.onnx.export`` runs, their
``apply`` is routed to what they compute, written so that each scan becomes avssm's SelectiveScan node:

* ``SelectiveScanFn`` -> :func:`avssm.ops.selective_scan` (one node);
* ``MambaInnerFn`` -> the module's own ``mamba_inner_ref`` (convolution, projections and gate as standard ops,
  its ``selective_scan_fn`` as one node).

Outside export nothing changes: the Functions run, with the stand-in kernels where the compiled ones are missing.
"""
from __future__ import annotations

import torch

from avssm.compat.selective_scan_cuda import NotCoveredError
from avssm.ops import selective_scan


def _export_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                           return_last_state=False):
    if return_last_state:
        raise NotCoveredError("selective_scan_fn(..., return_last_state=True) cannot be exported: an exported graph "
                              "has no scan state output; call it without return_last_state for export")
    B = B[:, None] if B.dim() == 3 else B
    C = C[:, None] if C.dim() == 3 else C
    return selective_scan(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)


def _export_mamba_inner(module):
    def export(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight, out_proj_bias,
               A, B=None, C=None, D=None, delta_bias=None, B_proj_bias=None, C_proj_bias=None, delta_softplus=True,
               checkpoint_lvl=1, *rms):
        if any(r is not None for r in rms[:3]):
            raise NotCoveredError("mamba_inner_fn with b/c/dt RMS weights cannot be exported yet; covered: "
                                  "mamba_inner_fn without them")
        return module.mamba_inner_ref(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight,
                                      out_proj_weight, out_proj_bias, A, B, C, D, delta_bias, B_proj_bias,
                                      C_proj_bias, delta_softplus)
    return export


def _route_under_export(cls, export) -> None:
    if getattr(cls, "_avssm_export_route", None) is not None:
        return
    original = cls.apply

    def apply(_cls, *args, **kwargs):
        if torch.onnx.is_in_onnx_export():
            return export(*args, **kwargs)
        return original(*args, **kwargs)

    cls.apply = classmethod(apply)
    cls._avssm_export_route = export


def patch_selective_scan_interface(module) -> None:
    """mamba_ssm.ops.selective_scan_interface (1.x, 2.x): route its Functions' apply to exportable code."""
    if hasattr(module, "SelectiveScanFn"):
        _route_under_export(module.SelectiveScanFn, _export_selective_scan)
    if hasattr(module, "MambaInnerFn") and hasattr(module, "mamba_inner_ref"):
        _route_under_export(module.MambaInnerFn, _export_mamba_inner(module))
