"""Token-by-token reference of the gated delta rule (deploykit::GatedDeltaRule, see ops/contract.py).

The slowest and most obviously correct form: every other implementation (chunked, Triton, TensorRT
plugin) is tested against this one. Matches transformers' `torch_recurrent_gated_delta_rule`.
"""

from __future__ import annotations

import torch

L2NORM_EPS = 1e-6  # transformers' l2norm (modeling_qwen3_5.py `l2norm`) and FLA use eps=1e-6


def l2norm(x: torch.Tensor) -> torch.Tensor:
    """x * rsqrt(sum x^2 + eps) along the last axis (transformers' form, not FLA's x / sqrt(...))."""
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + L2NORM_EPS)


def key_heads_first(x: torch.Tensor, hv: int, use_qk_l2norm: int, scale: float = 1.0) -> torch.Tensor:
    """q or k [B,T,Hk,D] -> fp32 [B,Hv,T,D]: each key head serves Hv/Hk consecutive value heads (GQA),
    l2-normalised when asked, times `scale`."""
    x = x.repeat_interleave(hv // x.shape[2], dim=2).transpose(1, 2).float()
    return (l2norm(x) if use_qk_l2norm else x) * scale


def prepare_qkv(q, k, v, g, beta, scale: float, use_qk_l2norm: int):
    """fp32, heads-first [B,H,T,D] tensors with q/k expanded to the value heads (GQA), l2norm and scale applied."""
    hk, hv = q.shape[2], v.shape[2]
    if hv % hk != 0:
        raise ValueError(f"GatedDeltaRule: value heads Hv={hv} must be a multiple of key heads Hk={hk}")
    q, k = key_heads_first(q, hv, use_qk_l2norm, scale), key_heads_first(k, hv, use_qk_l2norm)
    v, g, beta = (x.transpose(1, 2).float() for x in (v, g, beta))  # [B,Hv,T,...]
    return q, k, v, g, beta


def naive_gated_delta_rule(
    q: torch.Tensor,  # [B,T,Hk,Dk]
    k: torch.Tensor,  # [B,T,Hk,Dk]
    v: torch.Tensor,  # [B,T,Hv,Dv]
    g: torch.Tensor,  # [B,T,Hv] fp32 log decay
    beta: torch.Tensor,  # [B,T,Hv]
    initial_state: torch.Tensor,  # [B,Hv,Dk,Dv] fp32
    scale: float,
    use_qk_l2norm: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (output [B,T,Hv,Dv] in v's dtype, final_state [B,Hv,Dk,Dv] fp32)."""
    out_dtype = v.dtype
    q, k, v, g, beta = prepare_qkv(q, k, v, g, beta, scale, use_qk_l2norm)
    S = initial_state.float().clone()  # [B,Hv,Dk,Dv]
    outs = []
    for t in range(q.shape[2]):
        S = S * g[:, :, t].exp()[..., None, None]
        k_t = k[:, :, t]  # [B,Hv,Dk]
        kv_mem = torch.einsum("bhk,bhkv->bhv", k_t, S)  # what S predicts for k_t
        delta = (v[:, :, t] - kv_mem) * beta[:, :, t, None]
        S = S + k_t[..., :, None] * delta[..., None, :]  # rank-1 write
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, :, t], S))  # read after the write
    o = torch.stack(outs, dim=1) if outs else v.new_zeros(v.shape[0], 0, v.shape[1], v.shape[3])
    return o.to(out_dtype), S  # o: [B,T,Hv,Dv]
