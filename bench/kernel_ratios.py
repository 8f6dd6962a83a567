"""Joins bench_gdn/bench_moe output with the shared baselines' output from the same GPU call and prints ratios
and the issue-5 targets.   python bench/kernel_ratios.py OUT_DIR
(files written by bench/run_gpu.sh: gdn_*.jsonl, fla_*.jsonl, moe.jsonl, moe_baseline.jsonl)"""

from __future__ import annotations

import glob
import json
import os
import sys

DECODE_TARGET, MOE_TARGET = (
    0.80,
    0.70,
)  # issue 5: >= 80 % of copy for the GDN state, >= 70 % for expert weights


def rows(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.startswith("{")]


def rows_glob(pattern: str) -> list[dict]:
    return [r for path in sorted(glob.glob(pattern)) for r in rows(path)]


def gdn(out_dir: str) -> None:
    mine = rows_glob(f"{out_dir}/gdn_*.jsonl")
    ours = [r for r in mine if not r.get("sweep") and "throughput_ms" in r]
    fla = {
        (r["kernel"], r["H"], r["HV"], r.get("B", r.get("T"))): r
        for r in rows_glob(f"{out_dir}/fla_*.jsonl")
        if "throughput_ms" in r
    }
    copy = next((r["copy_GBps"] for r in mine if "copy_GBps" in r), None)
    print(f"GDN (copy bandwidth measured in this run: {copy} GB/s)")
    for r in ours:
        if r["kernel"] not in ("recurrent", "chunk"):
            continue
        n = r.get("B", r.get("T"))
        f = fla.get((r["kernel"], r["H"], r["HV"], n))
        line = (
            f"  {r['kernel']:9s} H={r['H']:2d} HV={r['HV']:2d} {'B' if 'B' in r else 'T'}={n:5d}: "
            f"ours {r['throughput_ms']:.4f} ms thr, {r['latency_ms_median']:.4f} ms lat, graph {r.get('graph_ms')}"
        )
        if f:
            line += f" | fla {f['throughput_ms']:.4f} ms thr -> fla/ours = {f['throughput_ms'] / r['throughput_ms']:.2f}x"
        if "state_GBps_at_throughput" in r and copy:
            frac = r["state_GBps_at_throughput"] / copy
            line += f" | state {r['state_GBps_at_throughput']} GB/s = {100 * frac:.0f} % of copy"
            if r["kernel"] == "recurrent" and r["B"] == 64 and r["HV"] == 32:
                line += f" [target >= {100 * DECODE_TARGET:.0f} %: {'MET' if frac >= DECODE_TARGET else 'MISSED'}]"
        if r["kernel"] == "chunk" and r["T"] == 8192 and f:
            line += f" [target <= fla: {'MET' if r['throughput_ms'] <= f['throughput_ms'] else 'MISSED'}]"
        print(line + f" | errs: state {r.get('state_rel_err')}, out {r.get('out_err_bf16_ulps')} bf16 ulps")


def moe(out_dir: str) -> None:
    ours = [r for r in rows(f"{out_dir}/moe.jsonl") if "tiles" not in r and "throughput_ms" in r]
    base: dict = {}
    for r in rows(f"{out_dir}/moe_baseline.jsonl"):
        if "ms" in r:
            key = (r["model"], r["tokens"])
            if key not in base or r["ms"] < base[key]["ms"]:
                base[key] = r
    print("MoE (routed experts; baseline = best transformers impl of the whole block incl. shared expert)")
    for r in ours:
        b = base.get((r["model"], r["tokens"]))
        pct = r.get("graph_pct_of_copy", r.get("throughput_pct_of_copy"))
        line = (
            f"  {r['model']:10s} tokens={r['tokens']:4d} experts={r['distinct_experts']:3d}: ours "
            f"{r['throughput_ms']:.4f} ms thr / {r.get('graph_ms')} ms graph = {pct} % of copy; "
            f"torch grouped {r.get('torch_grouped_throughput_ms')} ms"
        )
        if b:
            line += f" | transformers {b['impl']} {b['ms']} ms -> {b['ms'] / r['throughput_ms']:.1f}x"
        if r["model"] == "35b-a3b" and r["tokens"] <= 64 and pct is not None:
            line += f" [target >= {100 * MOE_TARGET:.0f} %: {'MET' if pct >= 100 * MOE_TARGET else 'MISSED'}]"
        print(line + f" | err {r.get('max_err_over_max_ref')}")


if __name__ == "__main__":
    d = sys.argv[1] if len(sys.argv) > 1 else "out/bench"
    gdn(d)
    moe(d)
