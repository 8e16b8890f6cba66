"""Stand-in for the official VMamba code's compiled ``selective_scan_cuda_oflex`` (called by its
``csms6s.SelectiveScanCuda``), on :mod:`avssm.compat.selective_scan_cuda`:

    fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, nrows, out_float) -> [out, x]
    bwd(u, delta, A, B, C, D, delta_bias, dout, x, delta_softplus, nrows) -> [du, ddelta, dA, dB, dC, dD, ddelta_bias]

No z gate (VMamba gates outside the scan); ``out_float`` gives the output in fp32; ``nrows``, a kernel tiling
choice, changes nothing. :mod:`avssm.compat.selective_scan_cuda_core` is the same without ``out_float``.
"""
from __future__ import annotations

from avssm.compat import selective_scan_cuda as _mamba


def fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, nrows=1, out_float=True):
    out, x = _mamba.fwd(u, delta, A, B, C, D, None, delta_bias, delta_softplus)
    return [out.float() if out_float else out, x]


def bwd(u, delta, A, B, C, D, delta_bias, dout, x, delta_softplus, nrows=1):
    return _mamba.bwd(u, delta, A, B, C, D, None, delta_bias, dout, x, None, None, delta_softplus, False)
