"""Naive references of GatedDeltaRule's single-kernel stages (contract STAGE_OPS GatedDeltaPrep, GatedDeltaStates,
GatedDeltaOut): the chunked WY form of chunk.py cut where fla cuts it, with the intermediates in the contract's
layouts. Chunks are always GDN_CHUNK tokens, the last one zero-padded, as the kernels store them.

Same signatures as the stage ops (contract inputs in order, then attributes). Their composition is tested
against `naive_gated_delta_rule` (tests/ops/test_gated_delta_rule.py), not against chunk.py.
"""

from __future__ import annotations

import torch

from deploykit.ops.contract import GDN_CHUNK

from .chunk import decay_matrix, split_chunks
from .naive import key_heads_first, prepare_qkv


def _chunks(x: torch.Tensor) -> torch.Tensor:
    """[B,H,T,...] fp32 -> [B,H,NT,C,...], zero rows past T (always whole chunks, unlike chunk.py's short case)."""
    return split_chunks(x, GDN_CHUNK)


def naive_gated_delta_prep(q, k, v, g, beta, scale: float, use_qk_l2norm: int = 1):
    """(w, u, aqk, gcs), each fp32 [B,Hv,NT,C,...]."""
    q, k, v, g, beta = (_chunks(x) for x in prepare_qkv(q, k, v, g, beta, scale, use_qk_l2norm))
    gcs = g.cumsum(-1)
    decay = decay_matrix(gcs)
    k_beta = k * beta[..., None]
    a = (k_beta @ k.transpose(-1, -2)) * decay
    # (I + strict_tril(a)) X = rhs; unitriangular: the diagonal of `a` is not read
    solve = lambda rhs: torch.linalg.solve_triangular(a, rhs, upper=False, unitriangular=True)  # noqa: E731
    w = solve(k_beta * gcs.exp()[..., None])
    u = solve(v * beta[..., None])
    aqk = (q @ k.transpose(-1, -2)) * decay
    return w.contiguous(), u.contiguous(), aqk, gcs  # solve_triangular's results are column-major


def naive_gated_delta_states(k, w, u, gcs, initial_state, use_qk_l2norm: int = 1):
    """(hs [B,Hv,NT,Dk,Dv], vn [B,Hv,NT,C,Dv], final_state [B,Hv,Dk,Dv]), fp32."""
    kc = _chunks(key_heads_first(k, w.shape[1], use_qk_l2norm))
    S = initial_state.float().clone()
    hs, vn = w.new_empty(*w.shape[:3], *S.shape[2:]), torch.empty_like(u)
    for c in range(w.shape[2]):
        hs[:, :, c] = S
        vn[:, :, c] = u[:, :, c] - w[:, :, c] @ S
        last = gcs[:, :, c, -1:]  # padded rows repeat the last real token's decay
        k_to_end = kc[:, :, c] * (last - gcs[:, :, c]).exp()[..., None]
        S = S * last.exp()[..., None] + k_to_end.transpose(-1, -2) @ vn[:, :, c]
    return hs, vn, S


def naive_gated_delta_out(q, hs, vn, aqk, gcs, scale: float, use_qk_l2norm: int = 1):
    """output [B,T,Hv,Dv] in q's dtype."""
    T = q.shape[1]
    qc = _chunks(key_heads_first(q, hs.shape[1], use_qk_l2norm, scale))
    o = (qc * gcs.exp()[..., None]) @ hs + aqk @ vn  # [B,Hv,NT,C,Dv]
    o = o.reshape(o.shape[0], o.shape[1], -1, o.shape[-1])[:, :, :T]
    return o.transpose(1, 2).contiguous().to(q.dtype)
