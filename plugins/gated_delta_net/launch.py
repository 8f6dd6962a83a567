"""Torch-facing launchers for the GatedDeltaRule and CausalConv1d kernels.

`gated_delta_rule_fwd` and `causal_conv1d_fwd` take exactly the arguments of the naive references in
deploykit/ops (contract inputs in order, then attributes) and return the same tuple, so a test or a
plugin `enqueue` can swap one for the other. Launch geometry (tile sizes, warps, which GDN kernel) is
chosen here in one place; `grid_*` helpers are shared with the ahead-of-time (AOT) plugin path.
"""

from __future__ import annotations

import torch
import triton

from deploykit.ops.contract import (
    CAUSAL_CONV1D,
    GATED_DELTA_OUT,
    GATED_DELTA_PREP,
    GATED_DELTA_RULE,
    GATED_DELTA_STATES,
    GDN_CHUNK,
)
from deploykit.ops.torch_ops import launch_outputs

from .kernels import (
    causal_conv1d_kernel,
    gdn_chunk_kernel,
    gdn_chunk_out_kernel,
    gdn_chunk_prep_kernel,
    gdn_chunk_scan_kernel,
    gdn_chunk_states_kernel,
    gdn_recurrent_kernel,
)

CHUNK = GDN_CHUNK  # tokens per chunk, 64 as fla and transformers (tensor-core friendly, solve stays cheap);
# the stage ops' layout is in these chunks
# The persistent kernel also runs with 16- or 32-token chunks (`chunk_size`): at 64 its fp32 [64, 128] tiles
# spill 1.2-1.7 KB a thread on sm_90 in every tile and warp count, at 16 they fit (docs/kernels.md, "Static
# resources"). More, smaller sequential steps against no local memory: a trade for the GPU to decide.
CHUNK_SIZES = (16, 32, 64)
CHUNK16 = {"chunk_size": 16, "block_v": 32}  # the chunk configuration that does not spill on sm_90 (239 registers)
CHUNK_MIN_T = 64  # below one full chunk the recurrent kernel does less work than one chunk step
MODES = ("auto", "recurrent", "chunk", "split", "split3")
PREP_WARPS = 8  # the prep kernel's [64, 128] tiles over 256 threads (GDN_STAGE_TACTICS: 4 warps is tactic 3)
SCAN_STAGES = 2  # split/split3 scans. Triton's default 3 load stages need 169 KiB of shared memory on sm_80
# (> 163) for the split scan, 153 KiB on sm_90 for the split3 state scan (one program per SM; 113 KiB with 2)


def gdn_tiles(K: int, V: int, B: int, HV: int, chunked: bool) -> tuple[int, int]:
    """(BK, BV). BK covers all of Dk (the l2norm and k^T S need whole keys); BV splits Dv so that enough
    programs exist to fill a GPU (an H100 has 132 SMs; fewer than ~2 programs per SM starves the copy)."""
    BK = triton.next_power_of_2(K)
    if chunked:  # per-chunk work is redundant across V tiles, so prefer wide tiles unless the grid is tiny
        BV = 64 if B * HV >= 64 else 32
    else:  # decode: pure state streaming, 32 columns x 128 rows fp32 = 16 KB per program
        BV = 32 if B * HV * 4 >= 264 else 16
    return BK, min(BV, triton.next_power_of_2(V))


def grid_gdn(B: int, HV: int, V: int, BV: int) -> tuple[int, int]:
    return (triton.cdiv(V, BV), B * HV)


def out_tile(BVP: int) -> int:
    """split3's output value tile: [64, 64] fp32 outputs, the state slice [Dk, 64] is 32 KB of registers."""
    return min(64, BVP)


def grid_gdn_out(B: int, HV: int, V: int, T: int, BVO: int) -> tuple[int, int, int]:
    """split3's output step: chunks on axis 0 (the only axis allowed more than 65535 programs)."""
    return (triton.cdiv(T, CHUNK), triton.cdiv(V, BVO), B * HV)


def gated_delta_rule_fwd(
    q: torch.Tensor,  # [B,T,Hk,Dk]
    k: torch.Tensor,  # [B,T,Hk,Dk]
    v: torch.Tensor,  # [B,T,Hv,Dv]
    g: torch.Tensor,  # [B,T,Hv] fp32 log decay
    beta: torch.Tensor,  # [B,T,Hv]
    initial_state: torch.Tensor,  # [B,Hv,Dk,Dv] fp32
    scale: float,
    use_qk_l2norm: int = 1,
    *,
    mode: str = "auto",  # "auto" | "recurrent" | "chunk" (one persistent kernel) | "split" (prep + scan)
    # | "split3" (prep + state scan + chunk-parallel output)
    dot_precision: str = "ieee",
    solve: str = "rows",  # chunk/split only: "rows" (row substitution) or "blocked" (see kernels.py)
    block_v: int | None = None,
    num_warps: int | None = None,
    chunk_size: int = CHUNK,  # chunk only: tokens per chunk step, one of CHUNK_SIZES
    scratch16: bool = False,  # split3 only: the output side's scratch in v's 16-bit dtype (fla's precision)
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (output [B,T,Hv,Dv] in v's dtype, final_state [B,Hv,Dk,Dv] fp32), like naive_gated_delta_rule.
    Keyword-only knobs are for benchmarks and for the plugins' tactics. `out`: contiguous buffers of those
    shapes and dtypes to write into (a plugin's TensorRT outputs; a copy of the state would move its bytes
    twice).
    `scratch16`: split3 keeps aqk, the chunk states and the deltas in bf16/fp16, as fla keeps its
    intermediates: half the output side's scratch bytes (the dots stay fp32/tf32). The recurrence and
    the final state stay fp32 (within 1e-5); the output carries one more 16-bit rounding of three operands,
    so it is held to a few ulps of the output scale, not one ulp per element. A benchmark candidate: the
    stage ops (the AOT form) keep fp32 until a GPU run says it is worth their contract version 2."""
    GATED_DELTA_RULE.infer_shapes([tuple(t.shape) for t in (q, k, v, g, beta, initial_state)], check=True)
    if mode not in MODES:
        raise ValueError(f"GatedDeltaRule: mode must be one of {', '.join(MODES)}, got {mode!r}")
    if chunk_size not in CHUNK_SIZES:
        raise ValueError(f"GatedDeltaRule: chunk_size must be one of {CHUNK_SIZES}, got {chunk_size!r}")
    B, T, HK, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    q, k, v, g, beta = (x.contiguous() for x in (q, k, v, g, beta))
    h0 = initial_state.to(torch.float32).contiguous()
    o, ht = out if out is not None else (torch.empty_like(v), torch.empty_like(h0))
    for buf, like, name in ((o, v, "output"), (ht, h0, "final_state")):
        if buf.shape != like.shape or buf.dtype != like.dtype or not buf.is_contiguous():
            raise ValueError(f"GatedDeltaRule: out {name} must be contiguous {like.dtype} {list(like.shape)}, got "
                             f"{buf.dtype} {list(buf.shape)}")
    if scratch16 and (mode != "split3" or v.dtype not in (torch.bfloat16, torch.float16)):
        raise ValueError(f"GatedDeltaRule: scratch16 needs mode='split3' and bf16/fp16 activations, got "
                         f"mode={mode!r} and {v.dtype}")
    if T == 0 or mode == "recurrent" or (mode == "auto" and T < CHUNK_MIN_T):
        mode = "recurrent"
    BK, BV = gdn_tiles(K, V, B, HV, chunked=mode != "recurrent")
    BV = block_v or BV
    common = dict(HK=HK, HV=HV, K=K, V=V, BK=BK, USE_L2NORM=bool(use_qk_l2norm), scale=float(scale))
    grid = grid_gdn(B, HV, V, BV)
    if mode == "recurrent":
        gdn_recurrent_kernel[grid](q, k, v, g, beta, h0, T, o, ht, BV=BV, num_warps=num_warps or 4, **common)
    elif mode == "chunk":
        gdn_chunk_kernel[grid](
            q,
            k,
            v,
            g,
            beta,
            h0,
            T,
            o,
            ht,
            BT=chunk_size,
            BV=BV,
            DOT=dot_precision,
            BLOCKED_SOLVE=solve == "blocked",
            num_warps=num_warps or 4,
            **common,
        )
    else:
        three = mode == "split3"
        _split(q, k, v, g, beta, h0, T, o, ht, BV, dot_precision, solve, num_warps, common, three, scratch16)
    return o, ht


def _split(q, k, v, g, beta, h0, T, o, ht, BV, dot_precision, solve, num_warps, common, three: bool,
           scratch16: bool) -> None:
    """Chunk-parallel prep into fp32 scratch, then either the sequential scan that also writes the output
    ("split", two launches) or a state-only scan plus a chunk-parallel output kernel ("split3", three). For
    plugins that enqueue several kernels and own a workspace (the C++ IPluginV3 path, not QDP AOT plugins).
    split3's extra scratch is one fp32 state per chunk: B * Hv * cdiv(T, 64) * Dk * Dv * 4 bytes (2 bytes
    and the output side's scratch in v's dtype with `scratch16`)."""
    B, HV, V, BK = q.shape[0], common["HV"], common["V"], common["BK"]
    NT, BVP = triton.cdiv(T, CHUNK), triton.next_power_of_2(V)
    rows = B * HV * NT * CHUNK
    f32 = torch.float32
    out_side_dtype = v.dtype if scratch16 else f32  # aqk, hs, vn: read by split3's output kernel alone
    scratch = lambda *shape, dtype=f32: torch.empty(*shape, dtype=dtype, device=q.device)  # noqa: E731
    w, u, gcs = scratch(rows, BK), scratch(rows, BVP), scratch(rows)
    aqk = scratch(rows, CHUNK, dtype=out_side_dtype)
    _prep(q, k, v, g, beta, T, w, u, aqk, gcs, dot_precision, solve, PREP_WARPS, common)
    # the sequential scan of either path: one program per state tile, 2 load stages (SCAN_STAGES)
    scan = dict(BT=CHUNK, BV=BVP, BVS=BV, DOT=dot_precision, num_warps=num_warps or 4, num_stages=SCAN_STAGES)
    if not three:
        gdn_chunk_scan_kernel[grid_gdn(B, HV, V, BV)](q, k, w, u, aqk, gcs, h0, T, o, ht, **scan, **common)
        return
    hs, vn = scratch(B * HV * NT * BK, BVP, dtype=out_side_dtype), scratch(rows, BVP, dtype=out_side_dtype)
    _states(k, w, u, gcs, h0, T, hs, vn, ht, BV, scan, common)
    _out(q, hs, vn, aqk, gcs, T, o, dot_precision, common)


def _prep(q, k, v, g, beta, T, w, u, aqk, gcs, dot_precision, solve, num_warps, common) -> None:
    B, HV, V = q.shape[0], common["HV"], common["V"]
    gdn_chunk_prep_kernel[(triton.cdiv(T, CHUNK), B * HV)](
        q, k, v, g, beta, T, w, u, aqk, gcs, BT=CHUNK, BV=triton.next_power_of_2(V), DOT=dot_precision,
        BLOCKED_SOLVE=solve == "blocked", num_warps=num_warps, **common,
    )


def _states(k, w, u, gcs, h0, T, hs, vn, ht, BVS, scan, common) -> None:
    B, HV, V = k.shape[0], common["HV"], common["V"]
    state_cx = {key: common[key] for key in ("HK", "HV", "K", "V", "BK", "USE_L2NORM")}  # no q: no scale
    gdn_chunk_states_kernel[grid_gdn(B, HV, V, BVS)](k, w, u, gcs, h0, T, hs, vn, ht, **scan, **state_cx)


def _out(q, hs, vn, aqk, gcs, T, o, dot_precision, common) -> None:
    B, HV, V = q.shape[0], common["HV"], common["V"]
    BVP = triton.next_power_of_2(V)
    BVO = out_tile(BVP)
    gdn_chunk_out_kernel[grid_gdn_out(B, HV, V, T, BVO)](
        q, hs, vn, aqk, gcs, T, o, BT=CHUNK, BV=BVP, BVO=BVO, DOT=dot_precision, num_warps=4, **common
    )


# --- One launcher per GatedDeltaRule stage op (contract STAGE_OPS; the builder's lowering): split3's kernels,
# with the intermediates as the ops' outputs (the same bytes as _split's scratch) ---


def _check_stage_heads(K: int, V: int) -> None:
    if (triton.next_power_of_2(K), triton.next_power_of_2(V)) != (K, V):
        raise ValueError(f"GatedDeltaRule stages: Dk and Dv must be powers of two (the stage outputs are Dk / Dv "
                         f"wide, the kernels' tiles padded ones), got Dk={K}, Dv={V}")


def _stage_common(q_or_k, HV: int, V: int, scale: float, use_qk_l2norm: int) -> dict:
    _, _, HK, K = q_or_k.shape  # Hv % Hk == 0: launch_outputs checked the contract's requirements
    _check_stage_heads(K, V)
    return dict(HK=HK, HV=HV, K=K, V=V, BK=K, USE_L2NORM=bool(use_qk_l2norm), scale=float(scale))


def gated_delta_prep_fwd(q, k, v, g, beta, scale: float, use_qk_l2norm: int = 1, *, dot_precision: str = "ieee",
                         solve: str = "rows", num_warps: int = PREP_WARPS):
    """GatedDeltaPrep: (w, u, aqk, gcs), fp32 [B,Hv,NT,64,...]; one program per chunk and value head."""
    w, u, aqk, gcs = launch_outputs(GATED_DELTA_PREP, (q, k, v, g, beta))
    T, HV, V = q.shape[1], *v.shape[2:]
    common = _stage_common(q, HV, V, scale, use_qk_l2norm)
    if T:
        _prep(*(x.contiguous() for x in (q, k, v, g, beta)), T, w, u, aqk, gcs, dot_precision, solve, num_warps,
              common)
    return w, u, aqk, gcs


def gated_delta_states_fwd(k, w, u, gcs, initial_state, use_qk_l2norm: int = 1, *, dot_precision: str = "ieee",
                           block_v: int | None = None, num_warps: int = 4):
    """GatedDeltaStates: (hs [B,Hv,NT,Dk,Dv], vn [B,Hv,NT,64,Dv], final_state [B,Hv,Dk,Dv]), fp32; one program
    per state tile, sequential over the chunks."""
    hs, vn, ht = launch_outputs(GATED_DELTA_STATES, (k, w, u, gcs, initial_state))
    B, T, HV, V = k.shape[0], k.shape[1], w.shape[1], u.shape[-1]
    common = _stage_common(k, HV, V, 1.0, use_qk_l2norm)
    h0 = initial_state.contiguous()  # fp32: launch_outputs checked every dtype
    if not T:
        return hs, vn, ht.copy_(h0)
    BVS = block_v or gdn_tiles(common["K"], V, B, HV, chunked=True)[1]
    scan = dict(BT=CHUNK, BV=V, BVS=BVS, DOT=dot_precision, num_warps=num_warps, num_stages=SCAN_STAGES)
    _states(*(x.contiguous() for x in (k, w, u, gcs)), h0, T, hs, vn, ht, BVS, scan, common)
    return hs, vn, ht


def gated_delta_out_fwd(q, hs, vn, aqk, gcs, scale: float, use_qk_l2norm: int = 1, *, dot_precision: str = "ieee"):
    """GatedDeltaOut: output [B,T,Hv,Dv] in q's dtype; one program per chunk, value tile and value head."""
    (o,) = launch_outputs(GATED_DELTA_OUT, (q, hs, vn, aqk, gcs))
    T, HV, V = q.shape[1], hs.shape[1], hs.shape[-1]
    common = _stage_common(q, HV, V, scale, use_qk_l2norm)
    if T:
        _out(*(x.contiguous() for x in (q, hs, vn, aqk, gcs)), T, o, dot_precision, common)
    return o


def conv_tiles(C: int, T: int) -> tuple[int, int]:
    """(BC, BT): decode (T=1) wants many channels per program; prefill tiles time as well, 16 x 64 at most:
    with T not a multiple of 16 (any prompt; every AOT kernel) ptxas spills a 64 x 64 tile at 4 warps to
    local memory (3 KB per thread, sm_90) and fits 16 x 64 in 110 registers (docs/kernels.md, "Static
    resources")."""
    BT = min(64, triton.next_power_of_2(max(T, 1)))
    return (256 if T <= 4 else 16), BT


def grid_conv(B: int, C: int, T: int, BC: int, BT: int) -> tuple[int, int, int]:
    return (B, triton.cdiv(C, BC), max(triton.cdiv(T, BT), 1))


def causal_conv1d_fwd(
    x: torch.Tensor,  # [B,C,T]
    conv_state: torch.Tensor,  # [B,C,K-1]
    weight: torch.Tensor,  # [C,K]
    activation: str = "silu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (output [B,C,T], new_conv_state [B,C,K-1]) in x's dtype, like naive_causal_conv1d."""
    if activation not in ("silu", "none"):
        raise ValueError(f"CausalConv1d: activation must be 'silu' or 'none', got {activation!r}")
    CAUSAL_CONV1D.infer_shapes([tuple(t.shape) for t in (x, conv_state, weight)], check=True)
    B, C, T = x.shape
    KW = weight.shape[-1]
    x, w = x.contiguous(), weight.contiguous()
    st = conv_state.to(x.dtype).contiguous()
    out, new_state = torch.empty_like(x), torch.empty_like(st)
    BC, BT = conv_tiles(C, T)
    causal_conv1d_kernel[grid_conv(B, C, T, BC, BT)](
        x,
        st,
        w,
        T,
        C,
        out,
        new_state,
        KW=KW,
        KP=triton.next_power_of_2(max(KW - 1, 1)),
        BC=BC,
        BT=BT,
        SILU=activation == "silu",
        num_warps=4,
    )
    return out, new_state


def gdn_aot_spec(
    dtype: str,
    HK: int,
    HV: int,
    K: int,
    V: int,
    scale: float,
    use_qk_l2norm: int,
    chunked: bool,
    batch_hint: int = 64,
    dot_precision: str = "tf32",
    solve: str = "rows",
    chunk_size: int = CHUNK,
    block_v: int | None = None,
    num_warps: int = 4,
):
    """The KernelSpec a TensorRT AOT plugin compiles: same kernel and tiles as gated_delta_rule_fwd with the
    same knobs. Grid: (cdiv(V, BV), B * HV); runtime scalar: T."""
    from deploykit.plugins.aot import TRITON_DTYPE, KernelSpec

    t, f32 = "*" + TRITON_DTYPE[dtype], "*fp32"
    args = dict(q=t, k=t, v=t, g=f32, beta=t, h0=f32, T="i32", o=t, ht=f32)
    BK, BV = gdn_tiles(K, V, batch_hint, HV, chunked)
    BV = block_v or BV
    cx = dict(HK=HK, HV=HV, K=K, V=V, BK=BK, BV=BV, USE_L2NORM=bool(use_qk_l2norm), scale=float(scale))
    if chunked:
        cx.update(BT=chunk_size, DOT=dot_precision, BLOCKED_SOLVE=solve == "blocked")
    kernel = gdn_chunk_kernel if chunked else gdn_recurrent_kernel
    return KernelSpec(kernel, args, cx, num_warps=num_warps, grid=(f"cdiv(V,{BV})", "B*HV"))


def gdn_split_aot_specs(
    dtype: str,
    HK: int,
    HV: int,
    K: int,
    V: int,
    scale: float,
    use_qk_l2norm: int,
    batch_hint: int = 1,
    dot_precision: str = "tf32",
    solve: str = "rows",
    three: bool = False,
    prep_warps: int = PREP_WARPS,
    block_v: int | None = None,
    scan_warps: int = 4,
    scratch16: bool = False,
):
    """KernelSpecs of the multi-launch chunked paths (for a multi-kernel plugin with a workspace), in launch
    order: [prep, scan] ("split") or [prep, states, out] ("split3"), with the launchers' knobs (`block_v`: the
    scan's state tile BVS, else batch_hint's; `scratch16`: split3's aqk, hs and vn in `dtype`). Grids: prep
    (cdiv(T, 64), B * HV); scan and states (cdiv(V, BVS), B * HV); out (cdiv(T, 64), cdiv(V, BVO), B * HV).
    Runtime scalar: T."""
    from deploykit.plugins.aot import TRITON_DTYPE, KernelSpec

    t, f32 = "*" + TRITON_DTYPE[dtype], "*fp32"
    out_side = t if scratch16 and three else f32  # aqk, hs, vn: the output side's scratch (`scratch16`)
    BK, BVS = gdn_tiles(K, V, batch_hint, HV, chunked=True)
    BVP = triton.next_power_of_2(V)
    BVS = min(block_v, BVP) if block_v else BVS
    cx = dict(
        HK=HK, HV=HV, K=K, V=V, BT=CHUNK, BK=BK, BV=BVP, USE_L2NORM=bool(use_qk_l2norm), DOT=dot_precision
    )
    prep = KernelSpec(
        gdn_chunk_prep_kernel,
        dict(q=t, k=t, v=t, g=f32, beta=t, T="i32", w=f32, u=f32, aqk=out_side, gcs=f32),
        dict(cx, scale=float(scale), BLOCKED_SOLVE=solve == "blocked"),
        num_warps=prep_warps,
        grid=("cdiv(T,64)", "B*HV"),
    )
    if not three:
        scan = KernelSpec(
            gdn_chunk_scan_kernel,
            dict(q=t, k=t, w=f32, u=f32, aqk=f32, gcs=f32, h0=f32, T="i32", o=t, ht=f32),
            dict(cx, scale=float(scale), BVS=BVS),
            num_warps=scan_warps,
            num_stages=SCAN_STAGES,
            grid=(f"cdiv(V,{BVS})", "B*HV"),
        )
        return [prep, scan]
    states = KernelSpec(
        gdn_chunk_states_kernel,
        dict(k=t, w=f32, u=f32, gcs=f32, h0=f32, T="i32", hs=out_side, vn=out_side, ht=f32),
        dict(cx, BVS=BVS),
        num_warps=scan_warps,
        num_stages=SCAN_STAGES,
        grid=(f"cdiv(V,{BVS})", "B*HV"),
    )
    BVO = out_tile(BVP)
    out = KernelSpec(
        gdn_chunk_out_kernel,
        dict(q=t, hs=out_side, vn=out_side, aqk=out_side, gcs=f32, T="i32", o=t),
        dict(cx, scale=float(scale), BVO=BVO),
        num_warps=4,
        grid=("cdiv(T,64)", f"cdiv(V,{BVO})", "B*HV"),
    )
    return [prep, states, out]


GDN_STAGES = ("GatedDeltaPrep", "GatedDeltaStates", "GatedDeltaOut")  # split3's kernels, in launch order
# The stage plugins' tactics (TensorRT times each when it builds, on the engine's GPU), as launcher keywords.
# Prep: the two solves at 8 warps (row solve: 204 / 206 / 192 registers on sm_80 / 87 / 90, no spill; blocked:
# 228 / 218 / 254, 8 B of spill on sm_90 only), and the row solve at 4 warps (twice the blocks per SM; 255
# registers, 8-128 B of spill). States: the state tile of batch 1 (32 columns), then the two spill-free ones on
# sm_90 (bench/RESULTS.md static table).
GDN_STAGE_TACTICS = {
    "GatedDeltaPrep": {1: dict(solve="rows", num_warps=8), 2: dict(solve="blocked", num_warps=8),
                       3: dict(solve="rows", num_warps=4)},
    "GatedDeltaStates": {1: dict(block_v=32, num_warps=4), 2: dict(block_v=16, num_warps=4),
                         3: dict(block_v=32, num_warps=8)},
    "GatedDeltaOut": {1: {}},
}


def gdn_stage_aot_spec(op: str, dtype: str, HK: int, HV: int, K: int, V: int, scale: float, use_qk_l2norm: int,
                       dot_precision: str = "tf32", tactic: int = 1):
    """The KernelSpec of one GatedDeltaRule stage op (contract STAGE_OPS) for one of its tactics
    (GDN_STAGE_TACTICS), its runtime arguments in the QDP AOT order (the op's inputs, T, its outputs)."""
    _check_stage_heads(K, V)
    knobs = dict(GDN_STAGE_TACTICS[op][tactic])  # launcher keywords; the launchers' num_warps is per kernel
    if "num_warps" in knobs:
        knobs["prep_warps" if op == "GatedDeltaPrep" else "scan_warps"] = knobs.pop("num_warps")
    specs = gdn_split_aot_specs(dtype, HK, HV, K, V, scale, use_qk_l2norm, dot_precision=dot_precision, three=True,
                                **knobs)
    return dict(zip(GDN_STAGES, specs, strict=True))[op]


def conv_aot_spec(dtype: str, KW: int, activation: str, decode: bool):
    """KernelSpec for CausalConv1d. Grid: (B, cdiv(C, BC), cdiv(T, BT)); runtime scalars: T, C."""
    from deploykit.plugins.aot import TRITON_DTYPE, KernelSpec

    t = "*" + TRITON_DTYPE[dtype]
    BC, BT = conv_tiles(0, 1 if decode else 64)
    cx = dict(KW=KW, KP=triton.next_power_of_2(max(KW - 1, 1)), BC=BC, BT=BT, SILU=activation == "silu")
    return KernelSpec(
        causal_conv1d_kernel,
        dict(x=t, conv_state=t, weight=t, T="i32", C="i32", out=t, new_state=t),
        cx,
        num_warps=4,
        grid=("B", f"cdiv(C,{BC})", f"cdiv(T,{BT})"),
    )
