"""Stand-in for the causal-conv1d package (``import causal_conv1d``) where it is not installed: its Python API,
``causal_conv1d_fn`` and ``causal_conv1d_update``, and its ``cpp_functions`` submodule
(:mod:`avssm.compat.causal_conv1d_functions`), on :mod:`avssm.compat.causal_conv1d_cuda`'s PyTorch convolution.
Gradients flow through PyTorch's autograd."""
from __future__ import annotations

from avssm.compat.causal_conv1d_cuda import _no_seq_idx, causal_conv1d_update as _update, convolve

__version__ = "avssm"
__path__: list = []  # a package, so that `import causal_conv1d.cpp_functions` reaches avssm's stand-in

_ACTIVATIONS = (None, "silu", "swish")


def causal_conv1d_fn(x, weight, bias=None, seq_idx=None, initial_states=None, return_final_states=False,
                     final_states_out=None, activation=None):
    """x (batch, dim, L), weight (dim, width) -> (batch, dim, L) [, final states (batch, dim, width - 1)]."""
    if activation not in _ACTIVATIONS:
        raise NotImplementedError("activation must be None, silu, or swish")
    _no_seq_idx(seq_idx)
    out, final = convolve(x, weight, bias, initial_states, silu=activation is not None)
    if not return_final_states:
        return out
    if final_states_out is not None:
        final = final_states_out.copy_(final)
    return out, final


def causal_conv1d_update(x, conv_state, weight, bias=None, activation=None, cache_seqlens=None,
                         conv_state_indices=None):
    """One decoding step: x (batch, dim) or (batch, dim, L) against conv_state, which is updated in place."""
    if activation not in _ACTIVATIONS:
        raise NotImplementedError("activation must be None, silu, or swish")
    return _update(x, conv_state, weight, bias, activation is not None, cache_seqlens, conv_state_indices)
