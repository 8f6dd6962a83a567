"""Torch-facing launcher for the MoE kernels: `moe_fwd` has the signature of deploykit.ops.moe.naive_moe
(contract inputs in order, then attributes) and returns the same [N,H] tensor in hidden's dtype.

Tile choice lives here: decode (few pairs per expert) uses BM=16 row blocks, the smallest tl.dot tile,
and narrow N tiles so that enough programs stream weights; prefill uses BM=64.
"""

from __future__ import annotations

import os

import torch
import triton

from deploykit.ops.contract import (
    MOE,
    MOE_ALIGN,
    MOE_DOWN,
    MOE_GATE_UP,
    MOE_PAIR_DOWN,
    MOE_PAIR_GATE_UP,
    MOE_ROUTE,
)
from deploykit.ops.torch_ops import launch_outputs

from .kernels import (
    moe_align_kernel,
    moe_combine_kernel,
    moe_down_kernel,
    moe_gate_up_kernel,
    moe_pair_gate_up_kernel,
    moe_route_kernel,
    moe_token_down_kernel,
)
from .paths import PAIRS_MAX_TOKENS, PATHS, choose_path, grouped_block_m  # noqa: F401 (re-exported)


def route_constexprs(E: int, top_k: int, norm_topk_prob: int) -> dict:
    """Constexprs of the routing code (moe_route_kernel, and moe_pair_gate_up_kernel, which routes itself)."""
    return dict(
        E=E,
        BE=triton.next_power_of_2(E),
        TOP_K=top_k,
        KP=triton.next_power_of_2(top_k),
        NORM=bool(norm_topk_prob),
    )


def pair_tiles(H: int, I: int) -> dict[str, int]:
    """N tiles of 16 rows (so a 35B-A3B token's 8 pairs x 512 / 16 = 256 gate/up programs fill 132 SMs) and
    256-wide K steps of 16-bit weights (512 B per row per step)."""
    return dict(BN_GU=16, BN_DOWN=16, BK=min(256, triton.next_power_of_2(max(H, I))))


def grouped_tiles(block_m: int) -> dict[str, int]:
    """N/K tiles of both grouped GEMMs for row blocks of `block_m`: narrow N tiles when blocks are decode-sized
    (16 rows: about one block per expert hit, so enough programs stream weights), square 64 tiles otherwise."""
    if block_m == 16:
        return dict(BM=16, BN_GU=32, BN_DOWN=64, BK=128)
    return dict(BM=block_m, BN_GU=64, BN_DOWN=64, BK=64)


def moe_tiles(pairs: int, E: int) -> dict[str, int]:
    """Row block BM and N/K tiles for both GEMMs. Average rows per expert decides decode vs prefill."""
    return grouped_tiles(grouped_block_m(pairs, E))


def _dot_mode(dtype: torch.dtype) -> tuple[str, bool]:
    """(tl.dot input precision, upcast). fp32 activations: exact; 16-bit: the precision is ignored. The CPU
    interpreter's tl.dot is wrong for bf16 (numpy has no bf16); there the kernels upcast the bf16 tiles to
    fp32 first, which gives the same products (bf16 x bf16 is exact in fp32)."""
    upcast = os.environ.get("TRITON_INTERPRET") == "1" and dtype == torch.bfloat16
    return ("ieee" if dtype == torch.float32 or upcast else "tf32"), upcast


# --- One launcher per stage op (contract STAGE_OPS): its signature, its outputs, exactly one kernel each ---


def moe_route_fwd(router_logits: torch.Tensor, top_k: int, norm_topk_prob: int = 1):
    """MoERoute: (topk_ids [N,K] int32, topk_weights [N,K] fp32), like deploykit.ops.moe.naive_moe_route."""
    ids, w = launch_outputs(MOE_ROUTE, (router_logits,), {"top_k": top_k})
    N, E = router_logits.shape
    if N:
        moe_route_kernel[(N,)](
            router_logits.contiguous(),
            ids,
            w,
            **route_constexprs(E, top_k, norm_topk_prob),
        )
    return ids, w


def moe_align_fwd(router_logits: torch.Tensor, topk_ids: torch.Tensor, block_m: int = 16):
    """MoEAlign: (slot_pair [NB*block_m] int32, block_expert [NB] int32), pairs grouped by expert (stable),
    groups padded to block_m. router_logits gives E only."""
    # the kernel writes every slot; NB is the contract's bound cdiv(P, block_m) + min(E, P)
    slot_pair, block_expert = launch_outputs(MOE_ALIGN, (router_logits, topk_ids), {"block_m": block_m})
    E, P = router_logits.shape[1], topk_ids.numel()
    nb_max = block_expert.numel()
    moe_align_kernel[(1,)](
        router_logits,
        topk_ids.reshape(-1),
        P,
        nb_max,
        slot_pair,
        block_expert,
        E=E,
        BE=triton.next_power_of_2(E + 1),
        BM=block_m,
        BP=64,
        num_warps=4,
    )
    return slot_pair, block_expert


def moe_gate_up_fwd(hidden, gate_up, slot_pair, block_expert, top_k: int, block_m: int = 16, *, tiles=None):
    """MoEGateUp: inter [S,I] in hidden's dtype (blocks of expert E, i.e. unused, are not written)."""
    (inter,) = launch_outputs(MOE_GATE_UP, (hidden, gate_up, slot_pair, block_expert),
                              {"top_k": top_k, "block_m": block_m})
    H, (E, I2, _) = hidden.shape[1], gate_up.shape
    I, nb = I2 // 2, block_expert.numel()
    t = tiles or grouped_tiles(block_m)
    dot, upcast = _dot_mode(hidden.dtype)
    moe_gate_up_kernel[(nb, triton.cdiv(I, t["BN_GU"]))](
        hidden.contiguous(),
        gate_up.contiguous(),
        slot_pair.contiguous(),
        block_expert.contiguous(),
        hidden.shape[0] * top_k,
        inter,
        H=H,
        I=I,
        E=E,
        TOP_K=top_k,
        BM=block_m,
        BN=t["BN_GU"],
        BK=t["BK"],
        DOT=dot,
        UPCAST=upcast,
        num_warps=4,
    )
    return inter


def moe_down_fwd(inter, down, slot_pair, block_expert, topk_weights, block_m: int = 16, *, tiles=None):
    """MoEDown: pair_out [N,K,H] fp32, each pair's weighted expert output in token order."""
    ins = (inter, down, slot_pair, block_expert, topk_weights)
    (y,) = launch_outputs(MOE_DOWN, ins, {"block_m": block_m})
    (E, H, I), (N, K) = down.shape, topk_weights.shape
    t = tiles or grouped_tiles(block_m)
    dot, upcast = _dot_mode(inter.dtype)
    moe_down_kernel[(block_expert.numel(), triton.cdiv(H, t["BN_DOWN"]))](
        inter.contiguous(),
        down.contiguous(),
        slot_pair.contiguous(),
        block_expert.contiguous(),
        topk_weights.contiguous(),
        N * K,
        y,
        H=H,
        I=I,
        E=E,
        BM=block_m,
        BN=t["BN_DOWN"],
        BK=t["BK"],
        DOT=dot,
        UPCAST=upcast,
        num_warps=4,
    )
    return y


def moe_pair_gate_up_fwd(hidden, router_logits, gate_up, top_k: int, norm_topk_prob: int = 1, *, tiles=None):
    """MoEPairGateUp: (inter [N,K,I] in hidden's dtype, topk_ids [N,K] int32, topk_weights [N,K] fp32)."""
    inter, ids, w = launch_outputs(MOE_PAIR_GATE_UP, (hidden, router_logits, gate_up), {"top_k": top_k})
    (N, H), (E, I2, _) = hidden.shape, gate_up.shape
    I = I2 // 2
    t = tiles or pair_tiles(H, I)
    if N:
        moe_pair_gate_up_kernel[(N * top_k, triton.cdiv(I, t["BN_GU"]))](
            hidden.contiguous(),
            router_logits.contiguous(),
            gate_up.contiguous(),
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
    return inter, ids, w


def moe_pair_down_fwd(inter, down, topk_ids, topk_weights, *, tiles=None):
    """MoEPairDown: output [N,H] in inter's dtype."""
    (out,) = launch_outputs(MOE_PAIR_DOWN, (inter, down, topk_ids, topk_weights))
    (N, K, I), H = inter.shape, down.shape[1]
    t = tiles or pair_tiles(H, I)
    if N:
        moe_token_down_kernel[(N, triton.cdiv(H, t["BN_DOWN"]))](
            inter.contiguous(), down.contiguous(), topk_ids.contiguous(), topk_weights.contiguous(), out,
            H=H, I=I, TOP_K=K, BN=t["BN_DOWN"], BK=t["BK"], num_warps=4,
        )
    return out


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
    """Returns output [N,H] in hidden's dtype, like naive_moe: the stage launchers in the order the builder's
    lowering puts the stage ops. `path` ("auto", "grouped": five launches, expert-major; "pairs": two launches,
    per token-expert pair) and `tiles` (overrides moe_tiles / pair_tiles) are for benchmarks."""
    MOE.infer_shapes([tuple(t.shape) for t in (hidden, router_logits, gate_up, down)], {"top_k": top_k},
                     check=True)
    N, H = hidden.shape
    if N == 0:
        return torch.empty_like(hidden)
    if choose_path(N, path) == "pairs":
        inter, ids, w = moe_pair_gate_up_fwd(hidden, router_logits, gate_up, top_k, norm_topk_prob, tiles=tiles)
        return moe_pair_down_fwd(inter, down, ids, w, tiles=tiles)
    t = tiles or moe_tiles(N * top_k, gate_up.shape[0])
    ids, w = moe_route_fwd(router_logits, top_k, norm_topk_prob)
    slot_pair, block_expert = moe_align_fwd(router_logits, ids, t["BM"])
    inter = moe_gate_up_fwd(hidden, gate_up, slot_pair, block_expert, top_k, t["BM"], tiles=t)
    y = moe_down_fwd(inter, down, slot_pair, block_expert, w, t["BM"], tiles=t)
    out = torch.empty_like(hidden)
    BH = min(1024, triton.next_power_of_2(H))
    moe_combine_kernel[(N, triton.cdiv(H, BH))](y, out, H=H, TOP_K=top_k, BH=BH)
    return out


def moe_stage_aot_spec(
    op: str,
    dtype: str,
    H: int,
    I: int,
    E: int,
    top_k: int,
    norm_topk_prob: int = 1,
    block_m: int = 16,
):
    """The KernelSpec of one MoE stage op (contract STAGE_OPS), with its runtime arguments in the QDP AOT
    order: the op's inputs, runtime int scalars, its outputs (docs/kernels.md). `grid` says how a plugin
    derives the launch grid from the op's shapes. H and I are unused by MoERoute and MoEAlign."""
    from deploykit.plugins.aot import TRITON_DTYPE, KernelSpec

    t = "*" + TRITON_DTYPE[dtype]
    pt = lambda: pair_tiles(H, I)
    gt = grouped_tiles(block_m)
    route = lambda: route_constexprs(E, top_k, norm_topk_prob)
    gemm = dict(H=H, I=I, E=E, BM=block_m, BK=gt["BK"], DOT="ieee" if dtype == "float32" else "tf32", UPCAST=False)
    specs = {
        "MoEPairGateUp": lambda: KernelSpec(
            moe_pair_gate_up_kernel,
            dict(hidden=t, router_logits=t, gate_up=t, inter=t, ids="*i32", weights="*fp32"),
            dict(route(), H=H, I=I, BN=pt()["BN_GU"], BK=pt()["BK"]),
            grid=("N*TOP_K", f"cdiv(I,{pt()['BN_GU']})"),
        ),
        "MoEPairDown": lambda: KernelSpec(
            moe_token_down_kernel,
            dict(inter=t, down=t, ids="*i32", weights="*fp32", out=t),
            dict(H=H, I=I, TOP_K=top_k, BN=pt()["BN_DOWN"], BK=pt()["BK"]),
            grid=("N", f"cdiv(H,{pt()['BN_DOWN']})"),
        ),
        "MoERoute": lambda: KernelSpec(
            moe_route_kernel, dict(logits=t, ids="*i32", weights="*fp32"), route(), grid=("N",)
        ),
        "MoEAlign": lambda: KernelSpec(
            moe_align_kernel,
            dict(router_logits=t, ids="*i32", P="i32", NB_MAX="i32", slot_pair="*i32", block_expert="*i32"),
            dict(E=E, BE=triton.next_power_of_2(E + 1), BM=block_m, BP=64),
            grid=("1",),
        ),
        "MoEGateUp": lambda: KernelSpec(
            moe_gate_up_kernel,
            dict(hidden=t, gate_up=t, slot_pair="*i32", block_expert="*i32", P="i32", inter=t),
            dict(gemm, TOP_K=top_k, BN=gt["BN_GU"]),
            grid=("NB", f"cdiv(I,{gt['BN_GU']})"),
        ),
        "MoEDown": lambda: KernelSpec(
            moe_down_kernel,
            dict(inter=t, down=t, slot_pair="*i32", block_expert="*i32", weights="*fp32", P="i32", y="*fp32"),
            dict(gemm, BN=gt["BN_DOWN"]),
            grid=("NB", f"cdiv(H,{gt['BN_DOWN']})"),
        ),
    }
    return specs[op]()


def moe_aot_specs(
    dtype: str,
    H: int,
    I: int,
    E: int,
    top_k: int,
    norm_topk_prob: int,
    decode: bool,
    pairs: bool = False,
):
    """KernelSpecs of one `moe_fwd` path in launch order: the two pair stages, or the four grouped stages
    (block_m by `decode`) and the combine kernel (the lowered graph uses ReduceSum + CastLike instead)."""
    from deploykit.plugins.aot import TRITON_DTYPE, KernelSpec

    shape = dict(dtype=dtype, H=H, I=I, E=E, top_k=top_k, norm_topk_prob=norm_topk_prob)
    if pairs:
        return [moe_stage_aot_spec(op, **shape) for op in ("MoEPairGateUp", "MoEPairDown")]
    bm = grouped_block_m(1 if decode else 4 * E, E)
    stages = [moe_stage_aot_spec(op, **shape, block_m=bm) for op in ("MoERoute", "MoEAlign", "MoEGateUp", "MoEDown")]
    combine = KernelSpec(
        moe_combine_kernel,
        dict(y="*fp32", out="*" + TRITON_DTYPE[dtype]),
        dict(H=H, TOP_K=top_k, BH=min(1024, triton.next_power_of_2(H))),
        grid=("N", "cdiv(H,BH)"),
    )
    return [*stages, combine]
