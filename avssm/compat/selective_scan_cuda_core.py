"""Stand-in for the official VMamba code's compiled ``selective_scan_cuda_core``: the oflex calls without
``out_float`` (:mod:`avssm.compat.selective_scan_cuda_oflex`)."""
from __future__ import annotations

from avssm.compat import selective_scan_cuda_oflex as _oflex


def fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, nrows=1):
    return _oflex.fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, nrows, out_float=False)


bwd = _oflex.bwd
