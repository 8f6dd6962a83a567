"""Gated DeltaNet plugin kernels: GatedDeltaRule (recurrent decode / chunked prefill, and its three stage ops)
and CausalConv1d."""

from .launch import (
    causal_conv1d_fwd,
    gated_delta_out_fwd,
    gated_delta_prep_fwd,
    gated_delta_rule_fwd,
    gated_delta_states_fwd,
)

__all__ = ["causal_conv1d_fwd", "gated_delta_out_fwd", "gated_delta_prep_fwd", "gated_delta_rule_fwd",
           "gated_delta_states_fwd"]
