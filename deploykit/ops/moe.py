"""Routed experts (deploykit::MoE, see ops/contract.py): softmax router, top-k, SwiGLU experts.

`naive_moe` loops over tokens and their k experts one by one (the reference); `grouped_moe` sorts
the (token, expert) pairs by expert and runs one matmul pair per expert that was hit. Math in fp32,
output in the activation dtype. The shared expert is not part of the op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def route(router_logits: torch.Tensor, top_k: int, norm_topk_prob: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights [N,k] fp32, expert ids [N,k]): softmax in fp32, top-k, optional renormalisation. Equal
    probabilities go to the lower expert id (ONNX TopK's rule, and the Triton kernel's): torch.topk leaves
    ties unspecified, and 16-bit router logits tie often enough (bf16 has 8 significant bits) that the k-th
    choice would differ between devices."""
    p = torch.softmax(router_logits.float(), dim=-1)
    w, idx = torch.sort(p, dim=-1, descending=True, stable=True)
    w, idx = w[..., :top_k], idx[..., :top_k]
    if norm_topk_prob:
        w = w / w.sum(-1, keepdim=True)
    return w, idx


def _expert(x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """SwiGLU expert on fp32 rows x [n,H]; gate_up [2I,H] (gate rows first), down [H,I]."""
    return _silu_gate_up(x, gate_up) @ down.float().t()


def naive_moe(
    hidden: torch.Tensor,  # [N,H]
    router_logits: torch.Tensor,  # [N,E]
    gate_up: torch.Tensor,  # [E,2I,H]
    down: torch.Tensor,  # [E,H,I]
    top_k: int,
    norm_topk_prob: int = 1,
) -> torch.Tensor:
    """Returns output [N,H] in hidden's dtype."""
    w, idx = route(router_logits, top_k, norm_topk_prob)
    x = hidden.float()
    out = torch.zeros_like(x)
    for n in range(x.shape[0]):
        for j in range(top_k):
            e = int(idx[n, j])
            out[n] += w[n, j] * _expert(x[n:n + 1], gate_up[e], down[e])[0]
    return out.to(hidden.dtype)


def grouped_moe(
    hidden: torch.Tensor,  # [N,H]
    router_logits: torch.Tensor,  # [N,E]
    gate_up: torch.Tensor,  # [E,2I,H]
    down: torch.Tensor,  # [E,H,I]
    top_k: int,
    norm_topk_prob: int = 1,
) -> torch.Tensor:
    """Same as naive_moe; (token, expert) pairs sorted by expert, one SwiGLU per expert hit."""
    w, idx = route(router_logits, top_k, norm_topk_prob)
    x = hidden.float()
    flat = idx.reshape(-1)
    order = torch.argsort(flat, stable=True)
    token = order // top_k  # token of each sorted pair
    counts = torch.bincount(flat, minlength=gate_up.shape[0]).tolist()
    out = torch.zeros_like(x)
    start = 0
    for e, count in enumerate(counts):
        if count:
            rows = token[start:start + count]
            y = _expert(x[rows], gate_up[e], down[e]) * w.reshape(-1)[order[start:start + count], None]
            out.index_add_(0, rows, y)
            start += count
    return out.to(hidden.dtype)


# --- MoE's single-kernel stages (contract STAGE_OPS; the builder's lowering, deploykit/build/lower.py) ---
# Same signatures as the stage ops: contract inputs in order, then attributes. Pair p = n * K + j.


def _silu_gate_up(x: torch.Tensor, gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up for fp32 rows x [n,H] and one expert's gate_up [2I,H]."""
    gate, up = (x @ gate_up.float().t()).chunk(2, dim=-1)
    return F.silu(gate) * up


def naive_moe_route(router_logits: torch.Tensor, top_k: int, norm_topk_prob: int = 1):
    """(topk_ids [N,K] int32, topk_weights [N,K] fp32): `route` in the contract's output order."""
    w, idx = route(router_logits, top_k, norm_topk_prob)
    return idx.to(torch.int32), w


def naive_moe_pair_gate_up(hidden, router_logits, gate_up, top_k: int, norm_topk_prob: int = 1):
    """(inter [N,K,I] in hidden's dtype, topk_ids, topk_weights)."""
    ids, w = naive_moe_route(router_logits, top_k, norm_topk_prob)
    N, I = hidden.shape[0], gate_up.shape[1] // 2
    inter = torch.empty(N, top_k, I, dtype=hidden.dtype)
    for n in range(N):
        for j in range(top_k):
            inter[n, j] = _silu_gate_up(hidden[n:n + 1].float(), gate_up[int(ids[n, j])])[0]
    return inter, ids, w


def naive_moe_pair_down(inter, down, topk_ids, topk_weights):
    """output [N,H] in inter's dtype: sum over j of weight * down[expert] @ inter[n, j]."""
    N, K = topk_ids.shape
    out = torch.zeros(N, down.shape[1])
    for n in range(N):
        for j in range(K):
            out[n] += topk_weights[n, j] * (down[int(topk_ids[n, j])].float() @ inter[n, j].float())
    return out.to(inter.dtype)


def naive_moe_align(router_logits, topk_ids, block_m: int = 16):
    """(slot_pair [S] int32, block_expert [NB] int32). Experts in id order; each one's pairs in pair order,
    padded with P to a multiple of block_m; blocks past the last group get expert E and only padding."""
    E, flat = router_logits.shape[1], topk_ids.reshape(-1).long()
    P = flat.numel()
    nb = -(-P // block_m) + min(E, P)  # the contract's bound (MOE_ALIGN.derived)
    slots, blocks = [], []
    for e in range(E):
        pairs = (flat == e).nonzero().flatten().tolist()
        if pairs:
            n_blocks = -(-len(pairs) // block_m)
            slots += pairs + [P] * (n_blocks * block_m - len(pairs))
            blocks += [e] * n_blocks
    blocks += [E] * (nb - len(blocks))
    slots += [P] * (nb * block_m - len(slots))
    return torch.tensor(slots, dtype=torch.int32), torch.tensor(blocks, dtype=torch.int32)


def naive_moe_gate_up(hidden, gate_up, slot_pair, block_expert, top_k: int, block_m: int = 16):
    """inter [S,I] in hidden's dtype: silu(gate) * up of slot s's pair under its block's expert; 0 on padding
    (the contract leaves padding rows unspecified)."""
    P, E, I = hidden.shape[0] * top_k, gate_up.shape[0], gate_up.shape[1] // 2
    inter = torch.zeros(slot_pair.numel(), I, dtype=hidden.dtype)
    for s, p in enumerate(slot_pair.tolist()):
        e = int(block_expert[s // block_m])
        if p < P and e < E:
            inter[s] = _silu_gate_up(hidden[p // top_k:p // top_k + 1].float(), gate_up[e])[0]
    return inter


def naive_moe_down(inter, down, slot_pair, block_expert, topk_weights, block_m: int = 16):
    """pair_out [N,K,H] fp32: topk_weights[p] * down[expert] @ inter[s] at the pair p of each real slot s."""
    N, K = topk_weights.shape
    P, E = N * K, down.shape[0]
    out = torch.zeros(P, down.shape[1])
    for s, p in enumerate(slot_pair.tolist()):
        e = int(block_expert[s // block_m])
        if p < P and e < E:
            out[p] = topk_weights.reshape(-1)[p] * (down[e].float() @ inter[s].float())
    return out.reshape(N, K, -1)
