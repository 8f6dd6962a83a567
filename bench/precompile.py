"""Warms Triton's on-disk kernel cache for the quick GPU call: runs once every (shape, configuration) that
bench_gdn.py --quick and bench_moe.py --quick will time, in parallel worker processes, so that the timed steps
load compiled kernels instead of compiling ~20 specialisations one after another on one core (1-15 s each:
bench/RESULTS.md, AOT section). Same shapes and arguments as the timed calls, so the same specialisations.

    python bench/precompile.py [--workers N] [--smoke]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time


def gdn_jobs() -> list[tuple]:
    import bench_gdn as g

    quick = [dict(c, mode="recurrent") for c in g.DECODE_QUICK]  # any of them may be the best, reused below
    h0, hv0, _ = g.DECODE[0]
    decode = [("gdn", (b, 1, h, hv), c) for h, hv, b in g.DECODE + [(h0, hv0, 1)] for c in quick]
    h1, hv1, t1 = g.PREFILL[0]
    prefill = [("gdn", (1, t, h, hv), c) for h, hv, t in g.PREFILL for c in g.PREFILL_QUICK]
    prefill += [("gdn", (1, t1, h1, hv1), dict(c, dot_precision="tf32x3")) for c in g.PREFILL_QUICK]
    return decode + prefill


def moe_jobs() -> list[tuple]:
    """bench_moe's quick plan, one job per model and path (each allocates its model's experts once)."""
    import bench_moe as m

    jobs: dict[tuple[str, str], list] = {}
    for name, tokens, path, tiles in m.plan(quick=True):
        jobs.setdefault((name, m.choose_path(tokens, path)), []).append((tokens, tiles))
    return [("moe", key, cases) for key, cases in jobs.items()]


def aot_jobs() -> list[tuple]:
    """bench_aot.py's cases: their AOT specialisations are other cache entries than the JIT kernels'."""
    import bench_aot as a

    return [("aot", name, None) for name in a.CASES]


def run(job: tuple) -> str:
    try:
        return _run(job)
    except Exception as exc:  # noqa: BLE001  one failing specialisation must not stop the others
        return f"FAILED {job[:2]}: {repr(exc)[:200]}"


def _run(job: tuple) -> str:
    import torch

    t0 = time.perf_counter()
    kind, key, arg = job
    if kind == "aot":
        import bench_aot as a

        a.compile_only(key)
    elif kind == "gdn":
        import bench_gdn as g

        B, T, H, HV = key
        g.gated_delta_rule_fwd(*g.inputs(B, T, H, HV), g.K**-0.5, 1, **arg)
    else:
        import bench_moe as m

        name, path = key
        for tokens, tiles in arg:
            x, logits, gate_up, down, k = m.make(name, tokens)
            m.moe_fwd(x, logits, gate_up, down, k, 1, path=path, tiles=tiles)
            del gate_up, down
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    what = arg if kind == "gdn" else len(arg) if kind == "moe" else "aot"
    return f"{kind} {key} {what} cases: {time.perf_counter() - t0:.1f} s"


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    n = min(16, os.cpu_count() or 1)
    workers = int(sys.argv[sys.argv.index("--workers") + 1]) if "--workers" in sys.argv else n
    jobs = moe_jobs() + gdn_jobs() + aot_jobs()  # the long MoE jobs first, so they do not finish last
    if "--smoke" in sys.argv:  # on the CPU: one job of each kind is enough to exercise this script
        jobs = [jobs[0], next(j for j in jobs if j[0] == "gdn" and j[1][1] == 1), jobs[-1]]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:
        for line in pool.imap_unordered(run, jobs):
            print("compiled:", line, flush=True)
    print(
        f"precompile: {len(jobs)} jobs on {workers} workers in {time.perf_counter() - t0:.1f} s", flush=True
    )


if __name__ == "__main__":
    main()
