"""Joins bench_gdn/bench_moe output with the shared baselines' output from the same GPU call and prints ratios
and the issue-5 targets.   python bench/kernel_ratios.py OUT_DIR
(files written by bench/run_gpu.sh: gdn_*.jsonl, fla*.jsonl, moe.jsonl, moe_baseline.jsonl, aot.jsonl)"""

from __future__ import annotations

import glob
import json
import os
import sys

DECODE_TARGET, MOE_TARGET = (
    0.80,
    0.70,
)  # issue 5: >= 80 % of copy for the GDN state, >= 70 % for expert weights
# "Matches the naive reference" on the GPU, with the CPU acceptance bounds of issue 5: fp32 state within 1e-5
# relative, 16-bit outputs within one bf16 ulp (GDN) or a few ulps of the output scale (MoE: the SwiGLU
# intermediate is rounded to bf16 once more, tests/kernels/test_moe.py). tf32 dots (10-bit mantissa products)
# are not expected to meet 1e-5; their error is printed, and the tf32x3 / recurrent rows carry the fp32 check.
STATE_TOL, OUT_ULPS, MOE_TOL = 1e-5, 1.0, 4 * 2.0**-7
SCRATCH16_ULPS = 4.0  # GDN split3 with bf16 scratch (fla's precision): max |err| <= 4 ulps of output scale
# (tests/kernels/test_gdn.py SCRATCH16_ULPS, where the bound is derived), per element it is not held
GDN_KNOBS = ("mode", "solve", "block_v", "num_warps", "dot_precision", "scratch16")  # printed with each row


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
        for r in rows_glob(f"{out_dir}/fla*.jsonl")
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
        if r["kernel"] == "chunk":  # which of our prefill paths won
            line += f" [{r.get('mode')}{', bf16 scratch' if r.get('scratch16') else ''}]"
        if r["kernel"] == "chunk" and r["T"] == 8192 and f:
            line += f" [target <= fla: {'MET' if r['throughput_ms'] <= f['throughput_ms'] else 'MISSED'}]"
        print(line + f" | errs: state {r.get('state_rel_err')}, out {r.get('out_err_bf16_ulps')} bf16 ulps")
    print("GDN correctness on this run's device (every configuration timed, sweeps included):")
    seen = set()
    for r in mine:
        key = json.dumps({k: v for k, v in r.items() if k not in ("sweep",)}, sort_keys=True)
        if "state_rel_err" not in r or key in seen:  # the fastest row is emitted twice (sweep + final)
            continue
        seen.add(key)
        fp32_class = r.get("dot_precision", "none") != "tf32"
        if r.get("scratch16"):  # one more 16-bit rounding: held to the output scale, not per element
            out_ok = r.get("out_err_scale_ulps", 1e9) <= SCRATCH16_ULPS
        else:
            out_ok = r["out_err_bf16_ulps"] <= OUT_ULPS
        ok = r["state_rel_err"] <= STATE_TOL and out_ok
        tag = ("MATCH" if ok else "MISMATCH") if fp32_class else "tf32 (not held to 1e-5)"
        knobs = {k: r[k] for k in GDN_KNOBS if k in r}
        n = r.get("B", r.get("T"))
        print(
            f"  {tag:24s} {r['kernel']:9s} H={r['H']} HV={r['HV']} n={n} {knobs}: state "
            f"{r['state_rel_err']}, out {r['out_err_bf16_ulps']} ulps "
            f"({r.get('out_err_scale_ulps')} of the scale)"
        )
    for r in mine:
        if r.get("kernel") == "causal_conv1d":
            print(
                f"  conv B={r['B']} C={r['C']} T={r['T']}: state exact {r['state_exact']}, "
                f"out max abs err {r['out_max_abs_err']}"
            )
        if "error" in r:
            print(f"  FAILED TO RUN: {r}")


def moe(out_dir: str) -> None:
    mine = rows(f"{out_dir}/moe.jsonl")
    ours = [r for r in mine if "tiles" not in r and "throughput_ms" in r]
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
            f"  {r['model']:10s} tokens={r['tokens']:4d} experts={r['distinct_experts']:3d} "
            f"{r.get('path', 'grouped'):7s}{'*' if r.get('auto', True) else ' '}: "
            f"{r['throughput_ms']:.4f} ms thr / {r.get('graph_ms')} ms graph = {pct} % of copy; "
            f"torch grouped {r.get('torch_grouped_throughput_ms')} ms"
        )
        if b and r.get("auto", True):
            line += f" | transformers {b['impl']} {b['ms']} ms -> {b['ms'] / r['throughput_ms']:.1f}x"
        if r["model"] == "35b-a3b" and r["tokens"] <= 64 and pct is not None and r.get("auto", True):
            line += f" [target >= {100 * MOE_TARGET:.0f} %: {'MET' if pct >= 100 * MOE_TARGET else 'MISSED'}]"
        print(line + f" | err {r.get('max_err_over_max_ref')}")
    print("  (* = the launcher's default path for that batch: the row the target is read from)")
    checked = [r for r in mine if "max_err_over_max_ref" in r]
    bad = [r for r in checked if r["max_err_over_max_ref"] > MOE_TOL]
    print(
        f"MoE correctness on this run's device: {len(checked) - len(bad)} of {len(checked)} runs within {MOE_TOL:.4f} "
        f"of the output scale" + "".join(f"\n  MISMATCH {r}" for r in bad)
    )


def aot(out_dir: str) -> None:
    """bench_aot.py: each AOT specialisation against its launcher's JIT run on this device."""
    runs = [r for r in rows(f"{out_dir}/aot.jsonl") if "aot" in r]
    if not runs:
        return
    print("AOT kernels (what engines embed) vs the launchers' JIT kernels, same device:")
    for r in runs:
        if "error" in r:
            print(f"  FAILED TO RUN {r['aot']}: {r['error']}")
            continue
        verdict = "MATCH" if r["match"] else "MISMATCH"
        print(f"  {verdict} {r['aot']:26s} {r['kernel']:24s} max |aot - jit| / max |jit| = {r['max_diff_rel']}; "
              f"{r['aot_ms']} ms vs jit {r['jit_ms']} ms (aot/jit {r['aot_over_jit']})")
    # the engine's prefill at 8192 tokens x 32 heads, each AOT form, against fla's chunk kernel (same run)
    by_name = {r["aot"]: r for r in runs if r.get("aot_ms")}
    fla = next((r["throughput_ms"] for r in rows_glob(f"{out_dir}/fla*.jsonl")
                if r.get("kernel") == "chunk" and (r.get("H"), r.get("HV"), r.get("T")) == (16, 32, 8192)
                and "throughput_ms" in r), None)
    stages = [by_name.get(f"gdn_{s}_8192") for s in ("prep", "states", "out")]
    forms = {"tactic 2 (64-token chunks)": by_name.get("gdn_prefill_8192_tactic2"),
             "tactic 4 (16-token chunks)": by_name.get("gdn_prefill_8192_tactic4")}
    forms = {k: v["aot_ms"] for k, v in forms.items() if v}
    if all(stages):
        forms["--gdn-stages (prep + states + out)"] = round(sum(r["aot_ms"] for r in stages), 4)
    for what, ms in forms.items():
        vs = f" -> fla/ours = {fla / ms:.2f}x [target <= fla: {'MET' if ms <= fla else 'MISSED'}]" if fla else ""
        print(f"  AOT prefill T=8192 HV=32, {what}: {ms} ms{vs}")


if __name__ == "__main__":
    d = sys.argv[1] if len(sys.argv) > 1 else "out/bench"
    gdn(d)
    moe(d)
    aot(d)
