"""Triton kernels for the contract op MoE (see deploykit/ops/contract.py), fused_moe-style:

  1. moe_route_kernel    one program per token: fp32 softmax over E logits, top-k by repeated argmax,
                         optional renormalisation -> expert ids [N,k] int32, weights [N,k] fp32.
  2. moe_align_kernel    one program: counts pairs per expert, pads each expert's group to a multiple of
                         BM rows, and writes the permutation (slot -> pair index) and each row block's expert.
  3. moe_gate_up_kernel  grouped GEMM over row blocks of one expert: x @ gate^T and x @ up^T share the x
                         tile; SiLU(gate) * up is applied in registers; writes the intermediate [slots, I].
  4. moe_down_kernel     grouped GEMM intermediate @ down^T, scaled by the routing weight, written back in
                         the original (token, j) pair order (the un-permutation) as fp32.
  5. moe_combine_kernel  sums each token's k rows (fixed order: deterministic) and casts to the activation dtype.
Every expert's weights are read once per BM-row block of its tokens: at decode (few tokens per expert)
that is once, which is what the bandwidth target asks for.

A batch of a few tokens has almost no expert shared by two tokens, and there the five launches cost more than
the weights take to stream. The "pairs" path does it in two, reading each expert once per (token, expert) pair:
  1. moe_pair_gate_up_kernel   routes (each program for its own token) and runs gate/up as a GEMV per pair.
  2. moe_token_down_kernel     per token: its k down GEMVs, weighted and summed in registers, cast, stored.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _route_row(
    row, E: tl.constexpr, BE: tl.constexpr, TOP_K: tl.constexpr, KP: tl.constexpr, NORM: tl.constexpr
):
    """(ids [KP] int32, weights [KP] fp32) of one token from its E logits at `row`: fp32 softmax, top-k by
    repeated argmax (ties go to the lowest expert id), optional renormalisation. Entries >= TOP_K are 0."""
    o_e, o_j = tl.arange(0, BE), tl.arange(0, KP)
    b_l = tl.load(row + o_e, mask=o_e < E, other=float("-inf")).to(tl.float32)
    b_p = tl.exp(b_l - tl.max(b_l, axis=0))
    b_p = b_p / tl.sum(b_p, axis=0)
    b_w = tl.zeros([KP], dtype=tl.float32)
    b_ids = tl.zeros([KP], dtype=tl.int32)
    for j in tl.static_range(TOP_K):
        b_m = tl.max(b_p, axis=0)
        b_i = tl.min(tl.where(b_p == b_m, o_e, BE), axis=0)
        b_w = tl.where(o_j == j, b_m, b_w)
        b_ids = tl.where(o_j == j, b_i, b_ids)
        b_p = tl.where(o_e == b_i, -1.0, b_p)  # probabilities are >= 0, so -1 is never picked again
    if NORM:
        b_w = b_w / tl.sum(b_w, axis=0)
    return b_ids, b_w


@triton.jit
def moe_route_kernel(
    logits,
    ids,
    weights,
    E: tl.constexpr,
    BE: tl.constexpr,
    TOP_K: tl.constexpr,
    KP: tl.constexpr,
    NORM: tl.constexpr,
):
    i_n = tl.program_id(0).to(tl.int64)
    o_j = tl.arange(0, KP)  # KP = next power of two >= TOP_K
    b_ids, b_w = _route_row(logits + i_n * E, E, BE, TOP_K, KP, NORM)
    tl.store(ids + i_n * TOP_K + o_j, b_ids, mask=o_j < TOP_K)
    tl.store(weights + i_n * TOP_K + o_j, b_w, mask=o_j < TOP_K)


@triton.jit
def moe_align_kernel(
    router_logits,  # unused: MoEAlign's contract input for E (plugins pass inputs, scalars, outputs in order)
    ids,
    P,
    NB_MAX,
    slot_pair,
    block_expert,
    E: tl.constexpr,
    BE: tl.constexpr,
    BM: tl.constexpr,
    BP: tl.constexpr,
):
    """Writes every slot: its pair index, or P (the padding sentinel) where a group is padded to BM rows or past
    the last group; block_expert gets E past the last block. No pre-fill (one launch fewer at decode).
    Per-expert tables stay [BE] vectors, read per pair with tl.gather: no [pairs, experts] one-hot (it held 256
    registers a thread and spilled at E = 256, bench/RESULTS.md)."""
    o_p, o_e = tl.arange(0, BP), tl.arange(0, BE)
    counts = tl.zeros([BE], dtype=tl.int32)
    for p0 in range(0, P, BP):
        m_p = p0 + o_p < P
        counts += tl.histogram(tl.load(ids + p0 + o_p, mask=m_p, other=0), BE, mask=m_p)
    padded = tl.cdiv(counts, BM) * BM
    ends = tl.cumsum(padded, axis=0)
    starts = ends - padded
    nxt = starts  # each expert's next free slot
    for p0 in range(0, P, BP):
        m_p = p0 + o_p < P
        b_e = tl.load(ids + p0 + o_p, mask=m_p, other=BE - 1)
        same = (b_e[:, None] == b_e[None, :]) & (o_p[None, :] < o_p[:, None]) & m_p[None, :]
        rank = tl.sum(same.to(tl.int32), axis=1)  # stable: earlier pairs of the same expert first
        tl.store(slot_pair + tl.gather(nxt, b_e, 0) + rank, p0 + o_p, mask=m_p)
        nxt += tl.histogram(b_e, BE, mask=m_p)
    # padding, which the scatter above never writes: the tail of each group, then every slot past the last one
    for r in tl.static_range(BM):
        tl.store(slot_pair + ends - BM + r, P, mask=(o_e < E) & (ends - BM + r >= starts + counts))
    total = tl.sum(padded, axis=0)
    for s0 in range(total, NB_MAX * BM, BP):
        tl.store(slot_pair + s0 + o_p, P, mask=s0 + o_p < NB_MAX * BM)
    # block b belongs to the number of experts whose groups end at or before it: a histogram of the group ends
    # (in blocks) over each run of BP blocks, summed up
    ends_b = tl.where(o_e < E, ends // BM, -1)
    before = 0
    for b0 in range(0, NB_MAX, BP):
        here = (ends_b >= b0) & (ends_b < b0 + BP)
        h = tl.histogram(tl.where(here, ends_b - b0, 0), BP, mask=here)
        tl.store(block_expert + b0 + o_p, before + tl.cumsum(h, axis=0), mask=b0 + o_p < NB_MAX)
        before += tl.sum(h, axis=0)


@triton.jit
def moe_gate_up_kernel(
    hidden,
    gate_up,
    slot_pair,
    block_expert,
    P,
    inter,
    H: tl.constexpr,
    I: tl.constexpr,
    E: tl.constexpr,
    TOP_K: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    DOT: tl.constexpr,
    UPCAST: tl.constexpr,
):
    i_m, i_n = tl.program_id(0), tl.program_id(1)
    e = tl.load(block_expert + i_m)
    if e < E:
        o_m = i_m * BM + tl.arange(0, BM)
        pair = tl.load(slot_pair + o_m)
        m_m = pair < P
        tok = (pair // TOP_K).to(tl.int64)
        o_n = i_n * BN + tl.arange(0, BN)
        m_n = o_n < I
        p_w = gate_up + e.to(tl.int64) * (2 * I * H) + o_n[:, None] * H
        acc_g = tl.zeros([BM, BN], dtype=tl.float32)
        acc_u = tl.zeros([BM, BN], dtype=tl.float32)
        for k0 in range(0, H, BK):
            o_k = k0 + tl.arange(0, BK)
            m_k = o_k < H
            b_x = tl.load(
                hidden + tok[:, None] * H + o_k[None, :], mask=m_m[:, None] & m_k[None, :], other=0.0
            )
            m_w = m_n[:, None] & m_k[None, :]
            b_g = tl.load(p_w + o_k[None, :], mask=m_w, other=0.0)
            b_u = tl.load(p_w + I * H + o_k[None, :], mask=m_w, other=0.0)
            if UPCAST:  # TRITON_INTERPRET's tl.dot mishandles bf16 (numpy has none): same products in fp32
                b_x, b_g, b_u = b_x.to(tl.float32), b_g.to(tl.float32), b_u.to(tl.float32)
            acc_g = tl.dot(b_x, tl.trans(b_g), acc_g, input_precision=DOT)
            acc_u = tl.dot(b_x, tl.trans(b_u), acc_u, input_precision=DOT)
        b_h = acc_g * tl.sigmoid(acc_g) * acc_u  # SiLU(gate) * up
        tl.store(
            inter + o_m.to(tl.int64)[:, None] * I + o_n[None, :],
            b_h.to(inter.dtype.element_ty),
            mask=m_n[None, :],
        )


@triton.jit
def moe_down_kernel(
    inter,
    down,
    slot_pair,
    block_expert,
    weights,
    P,
    y,
    H: tl.constexpr,
    I: tl.constexpr,
    E: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    DOT: tl.constexpr,
    UPCAST: tl.constexpr,
):
    i_m, i_n = tl.program_id(0), tl.program_id(1)
    e = tl.load(block_expert + i_m)
    if e < E:
        o_m = i_m * BM + tl.arange(0, BM)
        pair = tl.load(slot_pair + o_m)
        m_m = pair < P
        o_n = i_n * BN + tl.arange(0, BN)
        m_n = o_n < H
        p_w = down + e.to(tl.int64) * (H * I) + o_n[:, None] * I
        acc = tl.zeros([BM, BN], dtype=tl.float32)
        for k0 in range(0, I, BK):
            o_k = k0 + tl.arange(0, BK)
            m_k = o_k < I
            b_a = tl.load(inter + o_m.to(tl.int64)[:, None] * I + o_k[None, :], mask=m_k[None, :], other=0.0)
            b_w = tl.load(p_w + o_k[None, :], mask=m_n[:, None] & m_k[None, :], other=0.0)
            if UPCAST:
                b_a, b_w = b_a.to(tl.float32), b_w.to(tl.float32)
            acc = tl.dot(b_a, tl.trans(b_w), acc, input_precision=DOT)
        b_r = tl.load(weights + pair, mask=m_m, other=0.0)  # routing weight of each pair
        tl.store(
            y + pair.to(tl.int64)[:, None] * H + o_n[None, :],
            acc * b_r[:, None],
            mask=m_m[:, None] & m_n[None, :],
        )


@triton.jit
def moe_combine_kernel(y, out, H: tl.constexpr, TOP_K: tl.constexpr, BH: tl.constexpr):
    i_n, i_h = tl.program_id(0).to(tl.int64), tl.program_id(1)
    o_h = i_h * BH + tl.arange(0, BH)
    acc = tl.zeros([BH], dtype=tl.float32)
    for j in tl.static_range(TOP_K):
        acc += tl.load(y + (i_n * TOP_K + j) * H + o_h, mask=o_h < H, other=0.0)
    tl.store(out + i_n * H + o_h, acc.to(out.dtype.element_ty), mask=o_h < H)


@triton.jit
def moe_pair_gate_up_kernel(
    hidden,
    router_logits,
    gate_up,
    inter,
    ids,
    weights,
    H: tl.constexpr,
    I: tl.constexpr,
    E: tl.constexpr,
    BE: tl.constexpr,
    TOP_K: tl.constexpr,
    KP: tl.constexpr,
    NORM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
):
    """Small batches, step 1 of 2: one program per (token-expert pair, I tile). It routes its token itself (a
    few hundred bytes of logits, recomputed by each program instead of a launch of its own), then streams its
    expert's gate and up rows as a GEMV and writes SiLU(gate) * up. Programs of the first I tile store the
    token's ids and weights for step 2."""
    i_p, i_n = tl.program_id(0), tl.program_id(1)
    i_tok, j = (i_p // TOP_K).to(tl.int64), i_p % TOP_K
    o_j = tl.arange(0, KP)
    b_ids, b_w = _route_row(router_logits + i_tok * E, E, BE, TOP_K, KP, NORM)
    if (i_n == 0) & (j == 0):
        tl.store(ids + i_tok * TOP_K + o_j, b_ids, mask=o_j < TOP_K)
        tl.store(weights + i_tok * TOP_K + o_j, b_w, mask=o_j < TOP_K)
    e = tl.sum(tl.where(o_j == j, b_ids, 0), axis=0).to(tl.int64)
    o_n = i_n * BN + tl.arange(0, BN)
    m_n = o_n < I
    p_w = gate_up + e * (2 * I * H) + o_n[:, None] * H
    acc_g = tl.zeros([BN, BK], dtype=tl.float32)  # reduced once after the loop
    acc_u = tl.zeros([BN, BK], dtype=tl.float32)
    for k0 in range(0, H, BK):
        o_k = k0 + tl.arange(0, BK)
        m_k = o_k < H
        b_x = tl.load(hidden + i_tok * H + o_k, mask=m_k, other=0.0).to(tl.float32)
        m_w = m_n[:, None] & m_k[None, :]
        acc_g += tl.load(p_w + o_k[None, :], mask=m_w, other=0.0).to(tl.float32) * b_x[None, :]
        acc_u += tl.load(p_w + I * H + o_k[None, :], mask=m_w, other=0.0).to(tl.float32) * b_x[None, :]
    b_g, b_u = tl.sum(acc_g, axis=1), tl.sum(acc_u, axis=1)
    tl.store(
        inter + i_p.to(tl.int64) * I + o_n, (b_g * tl.sigmoid(b_g) * b_u).to(inter.dtype.element_ty), mask=m_n
    )


@triton.jit
def moe_token_down_kernel(
    inter,
    down,
    ids,
    weights,
    out,
    H: tl.constexpr,
    I: tl.constexpr,
    TOP_K: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
):
    """Small batches, step 2 of 2: one program per (token, H tile) sums its k experts' down GEMVs, each scaled
    by its routing weight, in a fixed order (deterministic) and writes the output: no fp32 [P,H] buffer and no
    combine launch."""
    i_tok, i_n = tl.program_id(0).to(tl.int64), tl.program_id(1)
    o_n = i_n * BN + tl.arange(0, BN)
    m_n = o_n < H
    acc = tl.zeros([BN], dtype=tl.float32)
    for j in tl.static_range(TOP_K):
        i_p = i_tok * TOP_K + j
        e = tl.load(ids + i_p).to(tl.int64)
        p_w = down + e * (H * I) + o_n[:, None] * I
        b_acc = tl.zeros([BN, BK], dtype=tl.float32)
        for k0 in range(0, I, BK):
            o_k = k0 + tl.arange(0, BK)
            m_k = o_k < I
            b_a = tl.load(inter + i_p * I + o_k, mask=m_k, other=0.0).to(tl.float32)
            b_acc += (
                tl.load(p_w + o_k[None, :], mask=m_n[:, None] & m_k[None, :], other=0.0).to(tl.float32)
                * b_a[None, :]
            )
        acc += tl.sum(b_acc, axis=1) * tl.load(weights + i_p)
    tl.store(out + i_tok * H + o_n, acc.to(out.dtype.element_ty), mask=m_n)
