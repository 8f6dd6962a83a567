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
    gate, up = (x @ gate_up.float().t()).chunk(2, dim=-1)
    return (F.silu(gate) * up) @ down.float().t()


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
