"""Chunked (WY / UT-transform) form of the gated delta rule: same signature and results as
`naive_gated_delta_rule`, but O(T/C) sequential steps of matmuls instead of T rank-1 updates.

Within a chunk of C tokens the C delta-rule writes are folded into one triangular solve
(Yang et al., "Gated Delta Networks", 2024, §3; fla `chunk_gated_delta_rule`; transformers
`torch_chunk_gated_delta_rule`). Math in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deploykit.ops.contract import GDN_CHUNK

from .naive import prepare_qkv

CHUNK_SIZE = GDN_CHUNK  # 64, as fla and transformers use; the stage ops' chunk too (stages.py)


def split_chunks(x: torch.Tensor, c: int) -> torch.Tensor:
    """[B,H,T,...] -> [B,H,N,C,...], zero-padding T up to a multiple of c (zeros leave the state unchanged)."""
    pad = (-x.shape[2]) % c
    if pad:
        spec = (0, 0) * (x.dim() - 3) + (0, pad)
        x = F.pad(x, spec)
    return x.reshape(x.shape[0], x.shape[1], -1, c, *x.shape[3:])


def decay_matrix(cum: torch.Tensor) -> torch.Tensor:
    """exp(cum_i - cum_j) for j <= i (<= 1 since g <= 0), 0 above the diagonal: [..., C, C] from cum [..., C]."""
    c = cum.shape[-1]
    causal = torch.ones(c, c, dtype=torch.bool, device=cum.device).tril()
    return (cum[..., :, None] - cum[..., None, :]).masked_fill(~causal, float("-inf")).exp()


def chunk_gated_delta_rule(
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
    out_dtype, T = v.dtype, v.shape[1]
    q, k, v, g, beta = prepare_qkv(q, k, v, g, beta, scale, use_qk_l2norm)
    S = initial_state.float().clone()
    if T == 0:
        return v.new_zeros(v.shape[0], 0, v.shape[1], v.shape[3]).to(out_dtype), S
    c = min(CHUNK_SIZE, T)  # a short sequence is one chunk of its own length: no padding work
    q, k, v = (split_chunks(x, c) for x in (q, k, v))  # [B,H,N,C,D]
    g, beta = (split_chunks(x, c) for x in (g, beta))  # [B,H,N,C]

    cum = g.cumsum(-1)  # log decay from the chunk start to each position
    decay = decay_matrix(cum)
    k_beta = k * beta[..., None]
    # UT transform: (I + strict_tril(diag(beta) K K^T * decay)) [u | w] = [v*beta | k*beta*exp(cum)]
    a = (k_beta @ k.transpose(-1, -2)) * decay
    rhs = torch.cat([v * beta[..., None], k_beta * cum.exp()[..., None]], dim=-1)
    uw = torch.linalg.solve_triangular(a, rhs, upper=False, unitriangular=True)
    u, w = uw.split([v.shape[-1], k.shape[-1]], dim=-1)

    attn = (q @ k.transpose(-1, -2)) * decay  # intra-chunk q.k with decay, diagonal included
    q_decayed = q * cum.exp()[..., None]  # reads the state carried into the chunk
    last = cum[..., -1:]  # [B,H,N,1]
    k_to_end = k * (last - cum).exp()[..., None]  # decay from each position to the chunk end
    outs = []
    for n in range(q.shape[2]):
        v_new = u[:, :, n] - w[:, :, n] @ S  # the part of v the carried state does not predict
        outs.append(q_decayed[:, :, n] @ S + attn[:, :, n] @ v_new)
        S = S * last[:, :, n, :, None].exp() + k_to_end[:, :, n].transpose(-1, -2) @ v_new
    o = torch.cat(outs, dim=2)[:, :, :T]  # [B,Hv,T,Dv]
    return o.transpose(1, 2).contiguous().to(out_dtype), S
