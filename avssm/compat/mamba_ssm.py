"""What exporting code written against mamba_ssm needs: its autograd.Functions have no ONNX ``symbolic``, and the
exporter cannot inline one that calls another (avssm's scan node). While ``torch.onnx.export`` runs, their
``apply`` is routed to what they compute, written so that each scan becomes avssm's SelectiveScan node:

* ``SelectiveScanFn`` -> :func:`avssm.ops.selective_scan` (one node);
* ``MambaInnerFn``, and Vim's ``MambaInnerFnNoOutProj`` (bimamba v2) and ``BiMambaInnerFn`` (v1) -> their
  convolution, projections and gate as standard ops, each scan as one node;
* ``selective_scan_ref`` (the PyTorch reference, a loop over the sequence) -> one node.

Outside export nothing changes: the Functions run, with the stand-in kernels where the compiled ones are missing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from avssm.compat.causal_conv1d_cuda import convolve
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


def _inner_inputs(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, A, B, C, B_proj_bias,
                  C_proj_bias):
    """What mamba_ssm's fused inner Functions feed their scans: the convolved x (SiLU), delta before its bias,
    B and C (projected from x where not given), and the gate z; standard ops, for export."""
    length, rank, n = xz.shape[-1], delta_proj_weight.shape[1], A.shape[-1]
    x, z = xz.chunk(2, dim=1)
    x = convolve(x, conv1d_weight.reshape(conv1d_weight.shape[0], -1), conv1d_bias, silu=True)[0]
    projected = F.linear(x.transpose(1, 2), x_proj_weight)  # (batch, L, rank + 2N)
    delta = F.linear(projected[..., :rank], delta_proj_weight).transpose(1, 2)

    def variable(given, part, bias):
        if given is not None:
            return given
        value = part if bias is None else part + bias.to(part.dtype)
        return value.transpose(1, 2).reshape(xz.shape[0], 1, n, length)

    B = variable(B, projected[..., rank:rank + n], B_proj_bias)
    C = variable(C, projected[..., rank + n:rank + 2 * n], C_proj_bias)
    return x, delta, B, C, z


def _no_rms(rms) -> None:
    if any(r is not None for r in rms[:3]):
        raise NotCoveredError("mamba_inner_fn with b/c/dt RMS weights cannot be exported yet; covered: "
                              "mamba_inner_fn without them")


def export_mamba_inner(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight,
                       out_proj_bias, A, B=None, C=None, D=None, delta_bias=None, B_proj_bias=None, C_proj_bias=None,
                       delta_softplus=True, checkpoint_lvl=1, *rms):
    """MambaInnerFn (mamba_ssm 1.x, 2.x; Vim's 1.1.1): conv, projections, one scan node, out_proj."""
    _no_rms(rms)
    y = export_mamba_inner_no_out_proj(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, A, B, C,
                                       D, delta_bias, B_proj_bias, C_proj_bias, delta_softplus)
    return F.linear(y.transpose(1, 2), out_proj_weight, out_proj_bias)


def export_mamba_inner_no_out_proj(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, A, B=None,
                                   C=None, D=None, delta_bias=None, B_proj_bias=None, C_proj_bias=None,
                                   delta_softplus=True, checkpoint_lvl=1):
    """MambaInnerFnNoOutProj (Vim's bimamba v2 calls it for each direction): the gated scan output (b, d, L)."""
    x, delta, B, C, z = _inner_inputs(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, A, B, C,
                                      B_proj_bias, C_proj_bias)
    return selective_scan(x, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)


def export_bimamba_inner(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight,
                         out_proj_bias, A, A_b, B=None, C=None, D=None, delta_bias=None, B_proj_bias=None,
                         C_proj_bias=None, delta_softplus=True, checkpoint_lvl=1):
    """BiMambaInnerFn (Vim's bimamba v1): one convolution and projection, a forward scan and a scan of the reversed
    sequence with A_b, summed, then out_proj."""
    x, delta, B, C, z = _inner_inputs(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, A, B, C,
                                      B_proj_bias, C_proj_bias)
    kw = dict(D=D, delta_bias=delta_bias, delta_softplus=delta_softplus)
    y = selective_scan(x, delta, A, B, C, z=z, **kw)
    y_b = selective_scan(x.flip(-1), delta.flip(-1), A_b, B.flip(-1), C.flip(-1), z=z.flip(-1), **kw)
    return F.linear((y + y_b.flip(-1)).transpose(1, 2), out_proj_weight, out_proj_bias)


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


# Function class in mamba_ssm.ops.selective_scan_interface -> what it computes, for export
EXPORT_ROUTES = {"SelectiveScanFn": _export_selective_scan, "MambaInnerFn": export_mamba_inner,
                 "MambaInnerFnNoOutProj": export_mamba_inner_no_out_proj, "BiMambaInnerFn": export_bimamba_inner}


# plain function in the module -> what it computes, for export: mamba_ssm's PyTorch reference scan, a loop over
# the sequence, would otherwise be exported as one set of ops per step
FUNCTION_ROUTES = {"selective_scan_ref": _export_selective_scan}


def patch_selective_scan_interface(module) -> None:
    """mamba_ssm.ops.selective_scan_interface (1.x, 2.x, Vim's bundled 1.1.1): route its Functions' apply, and its
    reference scan, to exportable code while exporting."""
    for name, export in EXPORT_ROUTES.items():
        if isinstance(getattr(module, name, None), type):
            _route_under_export(getattr(module, name), export)
    for name, export in FUNCTION_ROUTES.items():
        original = getattr(module, name, None)
        if callable(original) and not hasattr(original, "__wrapped__"):
            def routed(*args, _original=original, _export=export, **kwargs):
                if torch.onnx.is_in_onnx_export():
                    return _export(*args, **kwargs)
                return _original(*args, **kwargs)

            routed.__wrapped__ = original
            setattr(module, name, routed)
