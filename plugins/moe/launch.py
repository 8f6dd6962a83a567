"""Torch-facing launcher for the MoE kernels: `moe_fwd` has the signature of deploykit.ops.moe.naive_moe
(contract inputs in order, then attributes) and returns the same [N,H] tensor in hidden's dtype.

Tile choice lives here: decode (few pairs per expert) uses BM=16 row blocks, the smallest tl.dot tile,
and narrow N tiles so that enough programs stream weights; prefill uses BM=64.
"""

from __future__ import annotations

import os

import torch
import triton

from .kernels import (
    moe_align_kernel,
    moe_combine_kernel,
    moe_down_kernel,
    moe_gate_up_kernel,
    moe_pair_gate_up_kernel,
    moe_route_kernel,
    moe_token_down_kernel,
)

PATHS = ("auto", "grouped", "pairs")
# "auto" takes the two-launch pairs path up to this many tokens. At 35B-A3B shapes (256 experts, top-8) 4
# tokens touch ~30 distinct experts for 32 pairs, so reading per pair costs ~6 % more bytes, against three
# launches saved (a few us each, about the time 8 experts take to stream). An estimate, not a measurement:
# bench/bench_moe.py times both paths at 1-8 tokens on the GPU.
PAIRS_MAX_TOKENS = 4


def choose_path(tokens: int, path: str = "auto") -> str:
    """The MoE path `moe_fwd` runs for `tokens` tokens: `path` itself, or for "auto" pairs up to
    PAIRS_MAX_TOKENS and grouped beyond."""
    if path not in PATHS:
        raise ValueError(f"MoE: path must be one of {', '.join(PATHS)}, got {path!r}")
    return path if path != "auto" else ("pairs" if tokens <= PAIRS_MAX_TOKENS else "grouped")


def route_constexprs(E: int, top_k: int, norm_topk_prob: int) -> dict:
    """Constexprs of the routing code (moe_route_kernel, and moe_pair_gate_up_kernel, which routes itself)."""
    return dict(
        E=E,
        BE=triton.next_power_of_2(E),
        TOP_K=top_k,
        KP=triton.next_power_of_2(top_k),
        NORM=bool(norm_topk_prob),
    )


def pair_tiles(H: int, I: int) -> dict[str, int]:  # noqa: E741 (contract symbol I)
    """N tiles of 16 rows (so a 35B-A3B token's 8 pairs x 512 / 16 = 256 gate/up programs fill 132 SMs) and
    256-wide K steps of 16-bit weights (512 B per row per step)."""
    return dict(BN_GU=16, BN_DOWN=16, BK=min(256, triton.next_power_of_2(max(H, I))))


def moe_tiles(pairs: int, E: int) -> dict[str, int]:
    """Row block BM and N/K tiles for both GEMMs. Average rows per expert decides decode vs prefill."""
    decode = pairs <= 2 * E  # about <= 2 rows per expert: one 16-row block holds each expert's tokens
    return dict(BM=16 if decode else 64, BN_GU=32 if decode else 64, BN_DOWN=64, BK=128 if decode else 64)


def _check(hidden, router_logits, gate_up, down, top_k) -> None:
    N, H = hidden.shape
    E, I2, H2 = gate_up.shape
    if router_logits.shape != (N, E) or H2 != H or down.shape != (E, H, I2 // 2) or I2 % 2:
        raise ValueError(
            f"MoE: bad shapes hidden{list(hidden.shape)} router_logits{list(router_logits.shape)} "
            f"gate_up{list(gate_up.shape)} down{list(down.shape)}"
        )
    if not 1 <= top_k <= E:
        raise ValueError(f"MoE: top_k={top_k} must be in [1, {E}]")


def moe_route(router_logits: torch.Tensor, top_k: int, norm_topk_prob: int = 1):
    """(weights [N,k] fp32, ids [N,k] int32), like deploykit.ops.moe.route."""
    N, E = router_logits.shape
    ids = torch.empty(N, top_k, dtype=torch.int32, device=router_logits.device)
    w = torch.empty(N, top_k, dtype=torch.float32, device=router_logits.device)
    if N:
        moe_route_kernel[(N,)](
            router_logits.contiguous(),
            ids,
            w,
            **route_constexprs(E, top_k, norm_topk_prob),
        )
    return w, ids


def moe_align(ids: torch.Tensor, E: int, BM: int):
    """(slot_pair [NB*BM] int32, block_expert [NB] int32): pairs grouped by expert, groups padded to BM."""
    P = ids.numel()
    nb_max = triton.cdiv(P, BM) + min(E, P)  # each expert hit adds at most one partly filled block
    slot_pair = torch.empty(nb_max * BM, dtype=torch.int32, device=ids.device)  # the kernel writes every slot
    block_expert = torch.empty(nb_max, dtype=torch.int32, device=ids.device)
    moe_align_kernel[(1,)](
        ids.reshape(-1),
        P,
        slot_pair,
        block_expert,
        nb_max,
        E=E,
        BE=triton.next_power_of_2(E + 1),
        BM=BM,
        BP=64,
        num_warps=4,
    )
    return slot_pair, block_expert


def moe_fwd(
    hidden: torch.Tensor,  # [N,H]
    router_logits: torch.Tensor,  # [N,E]
    gate_up: torch.Tensor,  # [E,2I,H]
    down: torch.Tensor,  # [E,H,I]
    top_k: int,
    norm_topk_prob: int = 1,
    *,
    path: str = "auto",
    tiles: dict[str, int] | None = None,
) -> torch.Tensor:
    """Returns output [N,H] in hidden's dtype, like naive_moe. `path` ("auto", "grouped": five launches,
    expert-major; "pairs": two launches, per token-expert pair) and `tiles` (overrides moe_tiles / pair_tiles)
    are for benchmarks."""
    _check(hidden, router_logits, gate_up, down, top_k)
    N, H = hidden.shape
    path = choose_path(N, path)
    E, I = gate_up.shape[0], gate_up.shape[1] // 2  # noqa: E741 (contract symbol I)
    out = torch.empty_like(hidden)
    if N == 0:
        return out
    hidden, gate_up, down = hidden.contiguous(), gate_up.contiguous(), down.contiguous()
    if path == "pairs":
        return _moe_pairs(
            hidden, router_logits.contiguous(), gate_up, down, top_k, norm_topk_prob, out, tiles
        )
    P = N * top_k
    t = tiles or moe_tiles(P, E)
    dot = "ieee" if hidden.dtype == torch.float32 else "tf32"  # fp32 activations: exact; 16-bit: ignored
    # The CPU interpreter's tl.dot is wrong for bf16 (numpy has no bf16); there the kernels upcast the
    # bf16 tiles to fp32 first, which gives the same products (bf16 x bf16 is exact in fp32).
    upcast = os.environ.get("TRITON_INTERPRET") == "1" and hidden.dtype == torch.bfloat16
    if upcast:
        dot = "ieee"
    w, ids = moe_route(router_logits, top_k, norm_topk_prob)
    slot_pair, block_expert = moe_align(ids, E, t["BM"])
    nb = block_expert.numel()
    inter = torch.empty(nb * t["BM"], I, dtype=hidden.dtype, device=hidden.device)
    moe_gate_up_kernel[(nb, triton.cdiv(I, t["BN_GU"]))](
        hidden,
        gate_up,
        slot_pair,
        block_expert,
        P,
        inter,
        H=H,
        I=I,
        E=E,
        TOP_K=top_k,
        BM=t["BM"],
        BN=t["BN_GU"],
        BK=t["BK"],
        DOT=dot,
        UPCAST=upcast,
        num_warps=4,
    )
    y = torch.empty(P, H, dtype=torch.float32, device=hidden.device)
    moe_down_kernel[(nb, triton.cdiv(H, t["BN_DOWN"]))](
        inter,
        down,
        slot_pair,
        block_expert,
        w,
        P,
        y,
        H=H,
        I=I,
        E=E,
        BM=t["BM"],
        BN=t["BN_DOWN"],
        BK=t["BK"],
        DOT=dot,
        UPCAST=upcast,
        num_warps=4,
    )
    BH = min(1024, triton.next_power_of_2(H))
    moe_combine_kernel[(N, triton.cdiv(H, BH))](y, out, H=H, TOP_K=top_k, BH=BH)
    return out


def _moe_pairs(hidden, router_logits, gate_up, down, top_k, norm_topk_prob, out, tiles) -> torch.Tensor:
    N, H = hidden.shape
    E, I = gate_up.shape[0], gate_up.shape[1] // 2  # noqa: E741 (contract symbol I)
    t = tiles or pair_tiles(H, I)
    ids = torch.empty(N, top_k, dtype=torch.int32, device=hidden.device)
    w = torch.empty(N, top_k, dtype=torch.float32, device=hidden.device)
    inter = torch.empty(N * top_k, I, dtype=hidden.dtype, device=hidden.device)
    moe_pair_gate_up_kernel[(N * top_k, triton.cdiv(I, t["BN_GU"]))](
        hidden,
        router_logits,
        gate_up,
        inter,
        ids,
        w,
        H=H,
        I=I,
        **route_constexprs(E, top_k, norm_topk_prob),
        BN=t["BN_GU"],
        BK=t["BK"],
        num_warps=4,
    )
    moe_token_down_kernel[(N, triton.cdiv(H, t["BN_DOWN"]))](
        inter, down, ids, w, out, H=H, I=I, TOP_K=top_k, BN=t["BN_DOWN"], BK=t["BK"], num_warps=4
    )
    return out


def moe_aot_specs(
    dtype: str,
    H: int,
    I: int,  # noqa: E741 (contract symbol I)
    E: int,
    top_k: int,
    norm_topk_prob: int,
    decode: bool,
    pairs: bool = False,
):
    """KernelSpecs of one MoE path in launch order (a multi-kernel op: see docs/kernels.md): the five grouped
    kernels, or with `pairs` the two of the small-batch path (grids (N*top_k, cdiv(I, BN_GU)) and
    (N, cdiv(H, BN_DOWN)); no runtime scalar)."""
    from deploykit.plugins.aot import TRITON_DTYPE, KernelSpec

    t = "*" + TRITON_DTYPE[dtype]
    if pairs:
        pt = pair_tiles(H, I)
        route = route_constexprs(E, top_k, norm_topk_prob)
        return [
            KernelSpec(
                moe_pair_gate_up_kernel,
                dict(hidden=t, router_logits=t, gate_up=t, inter=t, ids="*i32", weights="*fp32"),
                dict(route, H=H, I=I, BN=pt["BN_GU"], BK=pt["BK"]),
                grid=("N*TOP_K", f"cdiv(I,{pt['BN_GU']})"),
            ),
            KernelSpec(
                moe_token_down_kernel,
                dict(inter=t, down=t, ids="*i32", weights="*fp32", out=t),
                dict(H=H, I=I, TOP_K=top_k, BN=pt["BN_DOWN"], BK=pt["BK"]),
                grid=("N", f"cdiv(H,{pt['BN_DOWN']})"),
            ),
        ]
    tl_ = moe_tiles(1 if decode else 4 * E, E)
    dot = "ieee" if dtype == "float32" else "tf32"
    gemm = dict(H=H, I=I, E=E, BM=tl_["BM"], BK=tl_["BK"], DOT=dot, UPCAST=False)
    return [
        KernelSpec(
            moe_route_kernel,
            dict(logits=t, ids="*i32", weights="*fp32"),
            route_constexprs(E, top_k, norm_topk_prob),
        ),
        KernelSpec(
            moe_align_kernel,
            dict(ids="*i32", P="i32", slot_pair="*i32", block_expert="*i32", NB_MAX="i32"),
            dict(E=E, BE=triton.next_power_of_2(E + 1), BM=tl_["BM"], BP=64),
        ),
        KernelSpec(
            moe_gate_up_kernel,
            dict(hidden=t, gate_up=t, slot_pair="*i32", block_expert="*i32", P="i32", inter=t),
            dict(gemm, TOP_K=top_k, BN=tl_["BN_GU"]),
        ),
        KernelSpec(
            moe_down_kernel,
            dict(inter=t, down=t, slot_pair="*i32", block_expert="*i32", weights="*fp32", P="i32", y="*fp32"),
            dict(gemm, BN=tl_["BN_DOWN"]),
        ),
        KernelSpec(
            moe_combine_kernel,
            dict(y="*fp32", out=t),
            dict(H=H, TOP_K=top_k, BH=min(1024, triton.next_power_of_2(H))),
        ),
    ]
