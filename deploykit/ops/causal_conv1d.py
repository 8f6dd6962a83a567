"""Depthwise causal conv1d with carried state (deploykit::CausalConv1d, see ops/contract.py).

`naive_causal_conv1d` sums the K taps explicitly; `causal_conv1d` is the same math through one
grouped F.conv1d. Both are fp32 inside and return the activation dtype. The new state is the last
K-1 columns of concat(conv_state, x), copied exactly (no arithmetic), so state round-trips bit-exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ACTIVATIONS = ("silu", "none")


def _check(x: torch.Tensor, conv_state: torch.Tensor, weight: torch.Tensor, activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"CausalConv1d: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if conv_state.shape[-1] != weight.shape[-1] - 1:
        raise ValueError(f"CausalConv1d: conv_state holds {conv_state.shape[-1]} columns, "
                         f"weight has K={weight.shape[-1]} (expected K-1)")


def naive_causal_conv1d(
    x: torch.Tensor,  # [B,C,T]
    conv_state: torch.Tensor,  # [B,C,K-1]
    weight: torch.Tensor,  # [C,K]
    activation: str = "silu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (output [B,C,T], new_conv_state [B,C,K-1]), both in x's dtype."""
    _check(x, conv_state, weight, activation)
    T, K = x.shape[-1], weight.shape[-1]
    full = torch.cat([conv_state.to(x.dtype), x], dim=-1)  # [B,C,K-1+T]
    f32, w = full.float(), weight.float()
    out = sum(w[:, j, None] * f32[..., j:j + T] for j in range(K))  # out[t] = sum_j w_j * full[t + j]
    if activation == "silu":
        out = F.silu(out)
    return out.to(x.dtype), full[..., full.shape[-1] - (K - 1):].clone()


def causal_conv1d(
    x: torch.Tensor,  # [B,C,T]
    conv_state: torch.Tensor,  # [B,C,K-1]
    weight: torch.Tensor,  # [C,K]
    activation: str = "silu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same as naive_causal_conv1d, one grouped conv call."""
    _check(x, conv_state, weight, activation)
    K = weight.shape[-1]
    full = torch.cat([conv_state.to(x.dtype), x], dim=-1)
    out = F.conv1d(full.float(), weight.float().unsqueeze(1), groups=weight.shape[0])  # valid conv: T outputs
    if activation == "silu":
        out = F.silu(out)
    return out.to(x.dtype), full[..., full.shape[-1] - (K - 1):].clone()
