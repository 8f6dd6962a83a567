"""GatedDeltaRule and CausalConv1d Triton kernels on a GPU: correctness against the naive reference, then
timings in the same JSON-lines form as shared/bench/fla_baseline.py (bench/baselines/fla_baseline.py),
so bench/kernel_ratios.py can join the two.

Targets (issue 5, shared/reference/h100-baseline.md): decode step 64 sequences x 32 value heads moves its
fp32 state at >= 80 % of the measured copy bandwidth (fla: 72-78 %); prefill 8192 tokens x 32 heads no
slower than fla's chunk_gated_delta_rule (0.888 ms at 32/32, 0.60 ms throughput at 16/32 in the table).

    python bench/bench_gdn.py [--quick] [--only decode|prefill|conv]
    BENCH_DEVICE=cpu TRITON_INTERPRET=1 python bench/bench_gdn.py --smoke   # the harness on tiny shapes, no GPU
"""

from __future__ import annotations

import sys

import torch

from _kernel_bench import DEV, SMOKE, copy_bandwidth_GBps, device_line, emit, import_plugins, timings

import_plugins()
from deploykit.ops.causal_conv1d import naive_causal_conv1d  # noqa: E402
from deploykit.ops.gated_delta_rule import naive_gated_delta_rule  # noqa: E402
from deploykit.plugins.gated_delta_net import causal_conv1d_fwd, gated_delta_rule_fwd  # noqa: E402
from deploykit.plugins.gated_delta_net.launch import CHUNK16  # noqa: E402

K = V = 16 if SMOKE else 128  # every Qwen3.5 size: key and value head dims 128 (shared/reference/qwen35.md)


def inputs(B, T, H, HV, seed=0):
    torch.manual_seed(seed)
    nrm = lambda *s: torch.randn(*s, device=DEV, dtype=torch.bfloat16)  # noqa: E731
    q, k, v = nrm(B, T, H, K), nrm(B, T, H, K), nrm(B, T, HV, V)
    g = -torch.rand(B, T, HV, device=DEV) * 0.1  # same ranges as fla_baseline.py
    beta = torch.rand(B, T, HV, device=DEV, dtype=torch.bfloat16)
    h0 = torch.randn(B, HV, K, V, device=DEV) * 0.1
    return q, k, v, g, beta, h0


def check(args, ref, **kw) -> dict:
    """Errors against naive_gated_delta_rule on the GPU (`ref` = its outputs): state relative (max abs / max),
    output in bf16 ulps, per element and of the output scale (max |err| / max |ref|: the bound scratch16
    is held to). Every configuration timed is checked, not only the fastest."""
    o, h = gated_delta_rule_fwd(*args, K**-0.5, 1, **kw)
    ro, rh = ref
    st = ((h - rh).abs().max() / rh.abs().max()).item()
    err, mag = (o.float() - ro.float()).abs(), ro.float().abs()
    ulps = (err / (mag * 2**-7 + 1e-3)).max().item()
    scale_ulps = (err.max() / mag.max() / 2**-7).item()
    return {"state_rel_err": float(f"{st:.3g}"), "out_err_bf16_ulps": round(ulps, 2),
            "out_err_scale_ulps": round(scale_ulps, 2)}


def run_configs(kind, shape: dict, args, configs, n_lat, n_thr, extra=None, final=True) -> dict | None:
    """Times and checks each configuration; emits one row each (marked sweep when there are several), then
    the fastest again unmarked (if `final`: the row kernel_ratios.py reads) and returns it. A configuration
    that fails (out of shared memory, say) is reported, not fatal."""
    ref = naive_gated_delta_rule(*args, K**-0.5, 1)
    best = None
    for c in configs:
        fn = lambda c=c: gated_delta_rule_fwd(*args, K**-0.5, 1, **c)  # noqa: E731
        try:
            row = {
                "kernel": kind,
                **shape,
                **c,
                **timings(fn, n_lat=n_lat, n_thr=n_thr),
                **check(args, ref, **c),
            }
        except Exception as exc:  # noqa: BLE001
            emit({"kernel": kind, **shape, **c, "error": repr(exc)[:160]})
            continue
        row.update(extra(row) if extra else {})
        if len(configs) > 1:
            emit({"sweep": True, **row})
        if best is None or row["throughput_ms"] < best["throughput_ms"]:
            best = row
    if best and final:
        emit(best)
    return best


KNOBS = ("mode", "dot_precision", "solve", "block_v", "num_warps", "chunk_size", "scratch16")


DECODE_SWEEP = [dict(block_v=bv, num_warps=w) for bv in (16, 32, 64) for w in (2, 4, 8)]
DECODE_QUICK = [
    {},
    dict(block_v=64, num_warps=4),
    dict(block_v=32, num_warps=2),
    dict(block_v=16, num_warps=2),
]
# quick: the launcher's default tiles first, then three neighbours (the recurrent kernel compiles in ~1 s)


def decode(H, HV, B, configs: list[dict]) -> dict:
    configs = [dict(c, mode="recurrent") for c in configs]
    state = lambda row: {
        "state_GBps_at_throughput": round(2 * B * HV * K * V * 4 / (row["throughput_ms"] / 1e3) / 1e9)
    }  # noqa: E731
    best = run_configs("recurrent", dict(H=H, HV=HV, B=B), inputs(B, 1, H, HV), configs, 30, 50, state)
    return {k: best[k] for k in KNOBS if k in best} if best else {}


_TF32 = dict(dot_precision="tf32")
PREFILL_QUICK = [  # the candidates a short GPU call times: the persistent kernel and the multi-launch paths.
    # Static sm_90 spills per thread (ptxas, bench/static_resources.py): the persistent chunk kernel 1.3-1.7 KB
    # in every tile and warp count; the split/split3 scans none at these tiles and warps (num_warps: the scan's)
    dict(mode="chunk", solve="blocked", block_v=64, **_TF32),
    dict(mode="chunk", solve="rows", block_v=64, **_TF32),
    dict(mode="chunk", solve="rows", **CHUNK16, **_TF32),  # QDP tactic 4: no spill
    dict(mode="split3", solve="rows", block_v=32, num_warps=8, **_TF32),
    dict(mode="split3", solve="rows", block_v=16, **_TF32),
    dict(mode="split3", solve="blocked", block_v=32, **_TF32),
    # fla's precision on the output side (aqk, chunk states, deltas in bf16): at 8192 tokens x 32 heads those
    # are 67 + 268 + 134 MB in fp32, each written once and read once, so 0.47 GB less traffic; the state scan
    # goes from 216 to 196 registers at 8 warps (sm_90, no spill either way)
    dict(mode="split3", solve="rows", block_v=32, num_warps=8, scratch16=True, **_TF32),
    dict(mode="split", solve="rows", block_v=32, num_warps=8, **_TF32),
]
PREFILL_SWEEP = (
    [
        dict(mode="chunk", solve=s, block_v=bv, num_warps=w, chunk_size=c, **_TF32)
        for s in ("rows", "blocked")
        for bv in (32, 64)
        for w in (4, 8)
        for c in (16, 32, 64)
    ]
    + [dict(mode="split", solve=s, block_v=bv, **_TF32) for s in ("rows", "blocked") for bv in (32, 64)]
    + [
        dict(mode="split3", solve=s, block_v=bv, num_warps=w, **_TF32)
        for s in ("rows", "blocked")
        for bv in (16, 32, 64)
        for w in (4, 8)
    ]
    + [dict(mode="split3", solve="rows", block_v=bv, num_warps=w, scratch16=True, **_TF32)
       for bv in (16, 32) for w in (4, 8)]
)


def prefill(H, HV, T, configs: list[dict]) -> dict:
    """kernel "chunk" = fla's name for the case, whichever of our paths runs it. With several configurations
    the fastest is also timed with near-fp32 dots (3 tf32 MMAs each), to show what that precision costs."""
    shape, args = dict(H=H, HV=HV, T=T), inputs(1, T, H, HV)
    best = run_configs("chunk", shape, args, configs, 10, 20)
    if not best:
        return {}
    chosen = {k: best[k] for k in KNOBS if k in best}
    if len(configs) > 1:
        run_configs(
            "chunk", shape, args, [{**chosen, "dot_precision": "tf32x3"}, chosen], 10, 20, final=False
        )
    return chosen


def conv(B, C, T):
    torch.manual_seed(0)
    x = torch.randn(B, C, T, device=DEV, dtype=torch.bfloat16)
    st = torch.randn(B, C, 3, device=DEV, dtype=torch.bfloat16)
    w = torch.randn(C, 4, device=DEV, dtype=torch.bfloat16)
    o, s = causal_conv1d_fwd(x, st, w, "silu")
    ro, rs = naive_causal_conv1d(x, st, w, "silu")
    r = timings(lambda: causal_conv1d_fwd(x, st, w, "silu"))
    gb = (2 * x.numel() + 2 * st.numel() + w.numel()) * 2 / (r["throughput_ms"] / 1e3) / 1e9
    emit(
        {
            "kernel": "causal_conv1d",
            "B": B,
            "C": C,
            "T": T,
            **r,
            "GBps_at_throughput": round(gb),
            "state_exact": bool(torch.equal(s, rs)),
            "out_max_abs_err": float((o.float() - ro.float()).abs().max()),
        }
    )


# (key heads, value heads, batch or tokens). Decode: the target case first (its best tiles are reused), then the
# other layouts at batch 1 and 64. Prefill likewise at 8192 tokens (and 2048). Conv: decode step and a prompt,
# 8192 channels = 2*16*128 + 32*128 (the qkv of the 35B-A3B).
if SMOKE:  # the harness end to end on the CPU interpreter: tiny heads, two chunks and a partial one
    DECODE = [(1, 2, 2), (2, 2, 1), (1, 3, 2)]
    PREFILL = [(1, 2, 130), (2, 2, 130), (1, 2, 70)]
    CONV = [(2, 64, 1), (1, 64, 70)]
else:
    DECODE = [(16, 32, 64)] + [(h, hv, b) for h, hv in ((32, 32), (16, 48), (16, 64)) for b in (1, 64)]
    PREFILL = [(16, 32, 8192), (32, 32, 8192), (16, 32, 2048), (16, 48, 8192), (16, 64, 8192)]
    CONV = [(64, 8192, 1), (1, 8192, 8192)]


def main() -> None:
    quick = "--quick" in sys.argv or SMOKE
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    emit({**device_line(), "copy_GBps": copy_bandwidth_GBps()})
    if only in (None, "decode"):
        best = decode(*DECODE[0], DECODE_QUICK if quick else DECODE_SWEEP)
        for case in DECODE[1:]:
            decode(*case, [best])
        decode(*DECODE[0][:2], 1, [{}])  # default tiles (the launcher's small-grid choice)
    if only in (None, "prefill"):
        best = prefill(*PREFILL[0], PREFILL_QUICK if quick else PREFILL_SWEEP)
        for case in PREFILL[1:]:
            prefill(*case, [best or PREFILL_QUICK[0]])
    if only in (None, "conv"):
        for case in CONV:
            conv(*case)


if __name__ == "__main__":
    main()
