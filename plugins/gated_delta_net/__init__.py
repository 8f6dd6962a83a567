"""Gated DeltaNet plugin kernels: GatedDeltaRule (recurrent decode / chunked prefill) and CausalConv1d."""

from .launch import causal_conv1d_fwd, gated_delta_rule_fwd

__all__ = ["causal_conv1d_fwd", "gated_delta_rule_fwd"]
