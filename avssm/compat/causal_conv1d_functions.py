"""Stand-in for ``causal_conv1d.cpp_functions`` (causal-conv1d 1.5 and later), the calls mamba_ssm 2.x imports."""
from __future__ import annotations

from avssm.compat.causal_conv1d_cuda import causal_conv1d_bwd, causal_conv1d_fwd, causal_conv1d_update


def causal_conv1d_fwd_function(x, weight, bias, seq_idx, initial_states, final_states_out, silu_activation):
    return causal_conv1d_fwd(x, weight, bias, seq_idx, initial_states, final_states_out, silu_activation)


def causal_conv1d_bwd_function(x, weight, bias, dout, seq_idx, initial_states, dfinal_states, dx,
                               return_dinitial_states, silu_activation):
    return tuple(causal_conv1d_bwd(x, weight, bias, dout, seq_idx, initial_states, dfinal_states, dx,
                                   return_dinitial_states, silu_activation))


def causal_conv1d_update_function(x, conv_state, weight, bias, silu_activation, cache_seqlens, conv_state_indices):
    return causal_conv1d_update(x, conv_state, weight, bias, silu_activation, cache_seqlens, conv_state_indices)
