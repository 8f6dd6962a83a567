"""Triton kernels for the contract ops GatedDeltaRule and CausalConv1d (see deploykit/ops/contract.py).

Layouts are the contract's, row-major and contiguous: q,k [B,T,Hk,Dk]; v,o [B,T,Hv,Dv]; g,beta [B,T,Hv];
state [B,Hv,Dk,Dv] fp32; conv x [B,C,T], conv_state [B,C,K-1], weight [C,K]. All math is fp32 in registers;
activations are loaded in their own dtype (fp32/fp16/bf16) and stored back in it.

GDN paths (a TensorRT AOT plugin embeds exactly one kernel, so the first two are single launches):
  * gdn_recurrent_kernel: one program per (value tile, batch*value head) keeps its [Dk, BV] slice of the
    state in registers and walks the T tokens. T=1 is the decode step; small T is the fused-recurrent path.
  * gdn_chunk_kernel: the same grid, but walks T in chunks of BT tokens using the WY/UT form
    (Yang et al. 2024, Gated Delta Networks §3): per chunk a few small matmuls plus one BT x BT unit
    lower-triangular inverse, so the sequential loop is T/BT steps of tensor-core work instead of T
    rank-1 updates. It is "persistent" in the sense that one program owns a state tile for the whole
    prompt; nothing goes through global memory between chunks.
  * gdn_chunk_prep_kernel + gdn_chunk_scan_kernel: the same algebra as two launches (chunk-parallel prep
    into scratch, then a scan with only the state-dependent matmuls), for multi-kernel plugins.
  * gdn_chunk_prep_kernel + gdn_chunk_states_kernel + gdn_chunk_out_kernel ("split3"): fla's partition, three
    launches; the sequential scan keeps only the two state-update matmuls per chunk, and the output is
    computed for all chunks in parallel from the stored per-chunk states.
Names inside kernels follow fla: i_ indices, o_ offsets, p_ pointers, b_ register blocks, m_ masks.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _l2norm_rows(x, USE_L2NORM: tl.constexpr):
    """x * rsqrt(sum(x^2) + eps) along the last axis (no-op unless USE_L2NORM)."""
    if USE_L2NORM:
        # eps 1e-6: transformers' `l2norm` and the contract (deploykit/ops/gated_delta_rule/naive.py L2NORM_EPS)
        x = x * tl.rsqrt(tl.sum(x * x, axis=-1, keep_dims=True) + 1e-6)
    return x


@triton.jit
def _heads(i_bh, HV: tl.constexpr, HK: tl.constexpr):
    """(batch, value head, key head) of grid row i_bh; a key head serves HV/HK consecutive value heads."""
    i_b, i_hv = i_bh // HV, i_bh % HV
    return i_b, i_hv, i_hv // (HV // HK)


@triton.jit
def _rows(x, i_t, H: tl.constexpr, i_h, D: tl.constexpr, o_d):
    """Pointers to head i_h's tile [tokens i_t, features o_d] of a [B*T, H, D] activation (the contract's)."""
    return x + (i_t[:, None] * H + i_h) * D + o_d[None, :]


@triton.jit
def _load_rows(x, i_t, H: tl.constexpr, i_h, D: tl.constexpr, o_d, mask):
    """That tile in fp32, masked rows and columns zero."""
    return tl.load(_rows(x, i_t, H, i_h, D, o_d), mask=mask, other=0.0).to(tl.float32)


@triton.jit
def gdn_recurrent_kernel(
    q,
    k,
    v,
    g,
    beta,
    h0,  # inputs (contract order and layout)
    T,  # runtime scalar (a TensorRT AOT plugin passes scalars between inputs and outputs)
    o,
    ht,  # outputs
    HK: tl.constexpr,
    HV: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    USE_L2NORM: tl.constexpr,
    scale: tl.constexpr,  # an attribute: baked into the PTX (AOT plugins do not serialize attributes)
):
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_hv, i_hk = _heads(i_bh, HV, HK)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    p_h = i_bh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :]
    b_h = tl.load(h0 + p_h, mask=m_h, other=0.0)
    for t in range(T):
        i_t = (i_b * T + t).to(tl.int64)  # flat token index
        b_q = tl.load(q + (i_t * HK + i_hk) * K + o_k, mask=m_k, other=0.0).to(tl.float32)
        b_k = tl.load(k + (i_t * HK + i_hk) * K + o_k, mask=m_k, other=0.0).to(tl.float32)
        b_v = tl.load(v + (i_t * HV + i_hv) * V + o_v, mask=m_v, other=0.0).to(tl.float32)
        b_g = tl.load(g + i_t * HV + i_hv).to(tl.float32)
        b_beta = tl.load(beta + i_t * HV + i_hv).to(tl.float32)
        b_q = _l2norm_rows(b_q, USE_L2NORM) * scale
        b_k = _l2norm_rows(b_k, USE_L2NORM)
        b_h = b_h * tl.exp(b_g)
        b_v = (b_v - tl.sum(b_h * b_k[:, None], axis=0)) * b_beta  # delta: what the state mispredicts
        b_h = b_h + b_k[:, None] * b_v[None, :]
        b_o = tl.sum(b_h * b_q[:, None], axis=0)  # read after the write (contract)
        tl.store(o + (i_t * HV + i_hv) * V + o_v, b_o.to(o.dtype.element_ty), mask=m_v)
    tl.store(ht + p_h, b_h, mask=m_h)


@triton.jit
def _unit_lower_inverse(a, BT: tl.constexpr):
    """(I + a)^-1 for strictly lower-triangular a [BT,BT] by forward substitution, one row per step."""
    o_t = tl.arange(0, BT)
    b_x = -a
    for i in tl.range(1, BT, loop_unroll_factor=1):  # unrolling 63 steps bloats the PTX to MBs
        m_i = o_t == i
        row = tl.sum(tl.where(m_i[:, None], b_x, 0.0), axis=0)  # row i of -a
        row = row + tl.sum(row[:, None] * b_x, axis=0) * (o_t < i)  # rows < i are already final
        b_x = tl.where(m_i[:, None], row[None, :], b_x)
    return b_x + (o_t[:, None] == o_t[None, :]).to(tl.float32)


@triton.jit
def _unit_lower_inverse_blocked(a, BT: tl.constexpr, BS: tl.constexpr, DOT: tl.constexpr):
    """(I + a)^-1 with fewer sequential steps: the BS x BS diagonal blocks by substitution, the row r of every
    block at once (one small matmul per step, BS-1 steps), then the block-strictly-lower rest M = Y_D N by the
    finite series (I + M)^-1 = I - M + M^2 - M^3 (exact: M^4 = 0 with at most 4 blocks)."""
    tl.static_assert(BT // BS <= 4)
    o_t = tl.arange(0, BT)
    b_r, b_c = o_t[:, None] // BS, o_t[None, :] // BS
    b_x = tl.where(b_r == b_c, -a, 0.0)  # becomes X_D = (I + D)^-1 - I, D = a's diagonal blocks
    for r in tl.range(1, BS, loop_unroll_factor=1):
        m_r = (o_t % BS) == r  # rows r, BS + r, ...: their blocks' earlier rows are final
        b_p = tl.dot(tl.where(m_r[:, None], b_x, 0.0), b_x, input_precision=DOT)
        b_x = tl.where(m_r[:, None], b_x + b_p, b_x)
    b_n = tl.where(b_r > b_c, a, 0.0)  # N: the blocks below the diagonal
    b_m = b_n + tl.dot(b_x, b_n, input_precision=DOT)  # M = (I + X_D) N
    b_m2 = tl.dot(b_m, b_m, input_precision=DOT)
    eye = (o_t[:, None] == o_t[None, :]).to(tl.float32)
    b_z = eye - b_m + b_m2 - tl.dot(b_m, b_m2, input_precision=DOT)  # (I + M)^-1
    return b_z + tl.dot(b_z, b_x, input_precision=DOT)  # (I + M)^-1 (I + X_D) = (I + a)^-1


@triton.jit
def _chunk_output(b_q, b_gc, b_h, b_qk, b_vn, DOT: tl.constexpr):
    """A chunk's output O = (Q o exp(gc)) S + (Q K^T o decay) D, from the state S at the chunk's start."""
    b_o = tl.dot(b_q * tl.exp(b_gc)[:, None], b_h, input_precision=DOT)
    return b_o + tl.dot(b_qk, b_vn, input_precision=DOT)


@triton.jit
def _advance_state(b_h, b_k, b_gc, b_vn, BT: tl.constexpr, DOT: tl.constexpr):
    """S <- exp(gc_last) S + (K o exp(gc_last - gc))^T D. Padded rows keep gc constant, so gc_last is the last
    real token's."""
    b_last = tl.sum(tl.where(tl.arange(0, BT) == BT - 1, b_gc, 0.0), axis=0)
    b_kd = b_k * tl.exp(b_last - b_gc)[:, None]  # decay from each row to the chunk end
    return b_h * tl.exp(b_last) + tl.dot(tl.trans(b_kd), b_vn, input_precision=DOT)


@triton.jit
def _scratch_deltas(w, u, r, o_k, o_v, m_v, b_h, BK: tl.constexpr, BV: tl.constexpr, DOT: tl.constexpr):
    """Deltas D = U - W S of one chunk from step 1's scratch rows r (padded rows: w = u = 0, so 0)."""
    b_w = tl.load(w + r[:, None] * BK + o_k[None, :])
    b_u = tl.load(u + r[:, None] * BV + o_v[None, :], mask=m_v[None, :], other=0.0)
    return b_u - tl.dot(b_w, b_h, input_precision=DOT)


@triton.jit
def gdn_chunk_kernel(
    q,
    k,
    v,
    g,
    beta,
    h0,
    T,
    o,
    ht,
    HK: tl.constexpr,
    HV: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    USE_L2NORM: tl.constexpr,
    scale: tl.constexpr,
    DOT: tl.constexpr,  # tl.dot input_precision for fp32 operands: "ieee" (exact), "tf32x3" or "tf32"
    BLOCKED_SOLVE: tl.constexpr,  # False: 63-step row substitution; True: 16-row blocks + matmuls (fewer steps)
):
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_hv, i_hk = _heads(i_bh, HV, HK)
    o_t, o_k = tl.arange(0, BT), tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    p_h = i_bh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :]
    b_h = tl.load(h0 + p_h, mask=m_k[:, None] & m_v[None, :], other=0.0)
    m_causal = o_t[:, None] >= o_t[None, :]
    for t0 in range(0, T, BT):
        i_t = (i_b * T + t0 + o_t).to(tl.int64)  # flat token index of each row
        m_t = (t0 + o_t) < T  # padded rows load zeros: k = beta = g = 0 leaves the state unchanged
        m_tk, m_tv = m_t[:, None] & m_k[None, :], m_t[:, None] & m_v[None, :]
        b_q = _load_rows(q, i_t, HK, i_hk, K, o_k, m_tk)
        b_k = _load_rows(k, i_t, HK, i_hk, K, o_k, m_tk)
        b_v = _load_rows(v, i_t, HV, i_hv, V, o_v, m_tv)
        b_g = tl.load(g + i_t * HV + i_hv, mask=m_t, other=0.0).to(tl.float32)
        b_beta = tl.load(beta + i_t * HV + i_hv, mask=m_t, other=0.0).to(tl.float32)
        b_q = _l2norm_rows(b_q, USE_L2NORM) * scale
        b_k = _l2norm_rows(b_k, USE_L2NORM)
        b_gc = tl.cumsum(b_g, axis=0)  # log decay from the chunk start, inclusive
        b_dec = tl.where(m_causal, tl.exp(b_gc[:, None] - b_gc[None, :]), 0.0)  # exp(gc_i - gc_j), j <= i
        b_kb = b_k * b_beta[:, None]
        b_a = tl.where(
            o_t[:, None] > o_t[None, :], tl.dot(b_kb, tl.trans(b_k), input_precision=DOT) * b_dec, 0.0
        )
        if BLOCKED_SOLVE:
            b_ai = _unit_lower_inverse_blocked(b_a, BT, 16, DOT)  # 16: the smallest tl.dot tile
        else:
            b_ai = _unit_lower_inverse(b_a, BT)
        b_w = tl.dot(b_ai, b_kb * tl.exp(b_gc)[:, None], input_precision=DOT)  # [BT,BK]
        b_u = tl.dot(b_ai, b_v * b_beta[:, None], input_precision=DOT)  # [BT,BV]
        b_vn = b_u - tl.dot(b_w, b_h, input_precision=DOT)  # deltas: the part of v the state does not predict
        b_qk = tl.dot(b_q, tl.trans(b_k), input_precision=DOT) * b_dec
        b_o = _chunk_output(b_q, b_gc, b_h, b_qk, b_vn, DOT)
        tl.store(_rows(o, i_t, HV, i_hv, V, o_v), b_o.to(o.dtype.element_ty), mask=m_tv)
        b_h = _advance_state(b_h, b_k, b_gc, b_vn, BT, DOT)
    tl.store(ht + p_h, b_h, mask=m_k[:, None] & m_v[None, :])


@triton.jit
def gdn_chunk_prep_kernel(
    q,
    k,
    v,
    g,
    beta,
    T,
    w,
    u,
    aqk,
    gcs,  # inputs, T, then scratch rows [B*HV*T_pad, ...]: fp32 (aqk: or 16-bit, scratch16)
    HK: tl.constexpr,
    HV: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    USE_L2NORM: tl.constexpr,
    scale: tl.constexpr,
    DOT: tl.constexpr,
    BLOCKED_SOLVE: tl.constexpr,
):
    """Split path, step 1 (parallel over chunks): everything of a chunk that does not depend on the state:
    W, U (the UT transform), the decayed intra-chunk Q K^T and the cumulative log decay."""
    i_c, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_hv, i_hk = _heads(i_bh, HV, HK)
    o_t, o_k, o_v = tl.arange(0, BT), tl.arange(0, BK), tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    t0 = i_c * BT
    i_t = (i_b * T + t0 + o_t).to(tl.int64)
    m_t = (t0 + o_t) < T
    m_tk, m_tv = m_t[:, None] & m_k[None, :], m_t[:, None] & m_v[None, :]
    b_k = _load_rows(k, i_t, HK, i_hk, K, o_k, m_tk)
    b_g = tl.load(g + i_t * HV + i_hv, mask=m_t, other=0.0).to(tl.float32)
    b_beta = tl.load(beta + i_t * HV + i_hv, mask=m_t, other=0.0).to(tl.float32)
    b_k = _l2norm_rows(b_k, USE_L2NORM)
    b_gc = tl.cumsum(b_g, axis=0)
    b_dec = tl.where(o_t[:, None] >= o_t[None, :], tl.exp(b_gc[:, None] - b_gc[None, :]), 0.0)
    r = (i_bh.to(tl.int64) * tl.cdiv(T, BT) + i_c) * BT + o_t  # scratch row: padded rows included
    tl.store(gcs + r, b_gc)
    b_q = _load_rows(q, i_t, HK, i_hk, K, o_k, m_tk)
    b_q = _l2norm_rows(b_q, USE_L2NORM) * scale
    b_qk = tl.dot(b_q, tl.trans(b_k), input_precision=DOT) * b_dec
    tl.store(aqk + r[:, None] * BT + o_t[None, :], b_qk.to(aqk.dtype.element_ty))  # fp32, or split3's 16-bit
    b_kb = b_k * b_beta[:, None]
    b_a = tl.where(o_t[:, None] > o_t[None, :], tl.dot(b_kb, tl.trans(b_k), input_precision=DOT) * b_dec, 0.0)
    # only the [BT, BT] system and two [BT] vectors live across the solve: q K^T is stored before it and k is
    # loaded again after it (an L2 hit), so no [BT, K] or [BT, V] tile holds registers through the BT-1 steps
    # (with them live, ptxas spilled 1-2 KB a thread on sm_80/87; now none at 8 warps, bench/RESULTS.md)
    if BLOCKED_SOLVE:
        b_ai = _unit_lower_inverse_blocked(b_a, BT, 16, DOT)
    else:
        b_ai = _unit_lower_inverse(b_a, BT)
    b_k = _load_rows(k, i_t, HK, i_hk, K, o_k, m_tk)
    b_kb = _l2norm_rows(b_k, USE_L2NORM) * (b_beta * tl.exp(b_gc))[:, None]
    tl.store(w + r[:, None] * BK + o_k[None, :], tl.dot(b_ai, b_kb, input_precision=DOT))
    b_v = _load_rows(v, i_t, HV, i_hv, V, o_v, m_tv)
    tl.store(u + r[:, None] * BV + o_v[None, :], tl.dot(b_ai, b_v * b_beta[:, None], input_precision=DOT))


@triton.jit
def gdn_chunk_scan_kernel(
    q,
    k,
    w,
    u,
    aqk,
    gcs,
    h0,
    T,
    o,
    ht,
    HK: tl.constexpr,
    HV: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    BVS: tl.constexpr,  # BV: scratch width; BVS: tile
    USE_L2NORM: tl.constexpr,
    scale: tl.constexpr,
    DOT: tl.constexpr,
):
    """Split path, step 2 (sequential over chunks, one program per state tile): only the state-dependent
    matmuls remain on the sequential path; W, U, Q K^T and the decays come from step 1."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_hv, i_hk = _heads(i_bh, HV, HK)
    o_t, o_k = tl.arange(0, BT), tl.arange(0, BK)
    o_v = i_v * BVS + tl.arange(0, BVS)
    m_k, m_v = o_k < K, o_v < V
    p_h = i_bh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :]
    b_h = tl.load(h0 + p_h, mask=m_k[:, None] & m_v[None, :], other=0.0)
    for t0 in range(0, T, BT):
        i_t = (i_b * T + t0 + o_t).to(tl.int64)
        m_t = (t0 + o_t) < T
        m_tk = m_t[:, None] & m_k[None, :]
        r = i_bh.to(tl.int64) * tl.cdiv(T, BT) * BT + t0 + o_t
        b_q = _load_rows(q, i_t, HK, i_hk, K, o_k, m_tk)
        b_k = _load_rows(k, i_t, HK, i_hk, K, o_k, m_tk)
        b_q = _l2norm_rows(b_q, USE_L2NORM) * scale
        b_k = _l2norm_rows(b_k, USE_L2NORM)
        b_gc = tl.load(gcs + r)
        b_qk = tl.load(aqk + r[:, None] * BT + o_t[None, :])
        b_vn = _scratch_deltas(w, u, r, o_k, o_v, m_v, b_h, BK, BV, DOT)
        b_o = _chunk_output(b_q, b_gc, b_h, b_qk, b_vn, DOT)
        m_tv = m_t[:, None] & m_v[None, :]
        tl.store(_rows(o, i_t, HV, i_hv, V, o_v), b_o.to(o.dtype.element_ty), mask=m_tv)
        b_h = _advance_state(b_h, b_k, b_gc, b_vn, BT, DOT)
    tl.store(ht + p_h, b_h, mask=m_k[:, None] & m_v[None, :])


@triton.jit
def gdn_chunk_states_kernel(
    k,
    w,
    u,
    gcs,
    h0,
    T,
    hs,
    vn,
    ht,
    HK: tl.constexpr,
    HV: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    BVS: tl.constexpr,  # BV: scratch width; BVS: tile
    USE_L2NORM: tl.constexpr,
    DOT: tl.constexpr,
):
    """Split3 path, step 2 (sequential over chunks, one program per state tile): the state recurrence alone,
    two matmuls per chunk. It stores each chunk's starting state and deltas, from which step 3 computes every
    chunk's output in parallel (fla's partition: the output matmuls leave the sequential path)."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, _, i_hk = _heads(i_bh, HV, HK)
    o_t, o_k = tl.arange(0, BT), tl.arange(0, BK)
    o_v = i_v * BVS + tl.arange(0, BVS)
    m_k, m_v = o_k < K, o_v < V
    p_h = i_bh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :]
    b_h = tl.load(h0 + p_h, mask=m_k[:, None] & m_v[None, :], other=0.0)  # rows >= K stay zero
    NT = tl.cdiv(T, BT)
    for i_c in range(NT):
        t0 = i_c * BT
        i_t = (i_b * T + t0 + o_t).to(tl.int64)
        m_t = (t0 + o_t) < T
        c = i_bh.to(tl.int64) * NT + i_c  # this chunk's index in the scratch buffers
        r = c * BT + o_t
        # hs, vn: fp32, or the activations' 16-bit dtype (scratch16); the recurrence stays fp32 either way
        p_hs = hs + (c * BK + o_k[:, None]) * BV + o_v[None, :]
        tl.store(p_hs, b_h.to(hs.dtype.element_ty), mask=m_v[None, :])
        b_k = _load_rows(k, i_t, HK, i_hk, K, o_k, m_t[:, None] & m_k[None, :])
        b_k = _l2norm_rows(b_k, USE_L2NORM)
        b_gc = tl.load(gcs + r)
        b_vn = _scratch_deltas(w, u, r, o_k, o_v, m_v, b_h, BK, BV, DOT)
        tl.store(vn + r[:, None] * BV + o_v[None, :], b_vn.to(vn.dtype.element_ty), mask=m_v[None, :])
        b_h = _advance_state(b_h, b_k, b_gc, b_vn, BT, DOT)
    tl.store(ht + p_h, b_h, mask=m_k[:, None] & m_v[None, :])


@triton.jit
def gdn_chunk_out_kernel(
    q,
    hs,
    vn,
    aqk,
    gcs,
    T,
    o,
    HK: tl.constexpr,
    HV: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    BVO: tl.constexpr,  # BV: scratch width; BVO: tile
    USE_L2NORM: tl.constexpr,
    scale: tl.constexpr,
    DOT: tl.constexpr,
):
    """Split3 path, step 3 (parallel over chunks and value tiles): O = (Q o exp(gc)) S_c + (Q K^T o decay) D."""
    i_c, i_v, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_hv, i_hk = _heads(i_bh, HV, HK)
    o_t, o_k = tl.arange(0, BT), tl.arange(0, BK)
    o_v = i_v * BVO + tl.arange(0, BVO)
    m_k, m_v = o_k < K, o_v < V
    t0 = i_c * BT
    i_t = (i_b * T + t0 + o_t).to(tl.int64)
    m_t = (t0 + o_t) < T
    c = i_bh.to(tl.int64) * tl.cdiv(T, BT) + i_c
    r = c * BT + o_t
    b_q = _load_rows(q, i_t, HK, i_hk, K, o_k, m_t[:, None] & m_k[None, :])
    b_q = _l2norm_rows(b_q, USE_L2NORM) * scale
    b_gc = tl.load(gcs + r)
    # fp32 scratch, or 16-bit (scratch16: half the bytes; the dots stay fp32/tf32, and Triton's interpreter,
    # which the CPU tests run, multiplies bf16 bit patterns in tl.dot: triton-lang/triton#11584)
    p_hs = hs + (c * BK + o_k[:, None]) * BV + o_v[None, :]
    b_h = tl.load(p_hs, mask=m_v[None, :], other=0.0).to(tl.float32)
    b_vn = tl.load(vn + r[:, None] * BV + o_v[None, :], mask=m_v[None, :], other=0.0).to(tl.float32)
    b_qk = tl.load(aqk + r[:, None] * BT + o_t[None, :]).to(tl.float32)
    b_o = _chunk_output(b_q, b_gc, b_h, b_qk, b_vn, DOT)
    tl.store(_rows(o, i_t, HV, i_hv, V, o_v), b_o.to(o.dtype.element_ty), mask=m_t[:, None] & m_v[None, :])


@triton.jit
def causal_conv1d_kernel(
    x,
    conv_state,
    weight,
    T,
    C,
    out,
    new_state,
    KW: tl.constexpr,
    KP: tl.constexpr,
    BC: tl.constexpr,
    BT: tl.constexpr,
    SILU: tl.constexpr,
):
    """out[b,c,t] = act(sum_j w[c,j] * full[b,c,t+j]), full = concat(conv_state, x) along time."""
    i_b, i_c, i_t = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    o_c = i_c * BC + tl.arange(0, BC)
    o_t = i_t * BT + tl.arange(0, BT)
    m_c, m_t = o_c < C, o_t < T
    row_x = (i_b.to(tl.int64) * C + o_c) * T
    row_s = (i_b.to(tl.int64) * C + o_c) * (KW - 1)
    acc = tl.zeros([BC, BT], dtype=tl.float32)
    for j in tl.static_range(KW):
        s = o_t + (j - (KW - 1))  # position in x; s < 0 is column KW-1+s of conv_state
        b_x = tl.load(x + row_x[:, None] + s[None, :], mask=m_c[:, None] & (m_t & (s >= 0))[None, :], other=0.0)
        b_x = b_x.to(tl.float32)
        if i_t == 0:  # only the first time tile reaches back into conv_state (fewer loads and registers)
            m_s = m_c[:, None] & (m_t & (s < 0))[None, :]
            b_x += tl.load(conv_state + row_s[:, None] + (s + KW - 1)[None, :], mask=m_s, other=0.0).to(tl.float32)
        b_w = tl.load(weight + o_c * KW + j, mask=m_c, other=0.0).to(tl.float32)
        acc += b_w[:, None] * b_x
    if SILU:
        acc = acc * tl.sigmoid(acc)
    tl.store(
        out + row_x[:, None] + o_t[None, :], acc.to(out.dtype.element_ty), mask=m_c[:, None] & m_t[None, :]
    )
    if i_t == 0:  # new state = last KW-1 columns of full, copied exactly
        o_j = tl.arange(0, KP)  # KP = next power of two >= KW-1; columns >= KW-1 are masked
        s_n = T + o_j  # position in full
        m_j = o_j < KW - 1
        b_nx = tl.load(
            x + row_x[:, None] + (s_n - (KW - 1))[None, :],
            mask=m_c[:, None] & (m_j & (s_n >= KW - 1))[None, :],
            other=0.0,
        )
        b_ns = tl.load(
            conv_state + row_s[:, None] + s_n[None, :],
            mask=m_c[:, None] & (m_j & (s_n < KW - 1))[None, :],
            other=0.0,
        )
        tl.store(
            new_state + row_s[:, None] + o_j[None, :],
            (b_nx + b_ns).to(new_state.dtype.element_ty),
            mask=m_c[:, None] & m_j[None, :],
        )
