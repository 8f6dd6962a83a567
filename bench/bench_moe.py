"""MoE Triton kernels (routed experts, contract op MoE) on a GPU: correctness against naive_moe, then timings
against a plain-PyTorch bf16 grouped implementation and the copy-bandwidth ceiling.

"Touched" bytes = distinct experts hit x 3 x I x H in bf16 (the routed experts only: the contract's MoE op
excludes the shared expert and the router matmul, so this is a little less than moe_baseline.py's figure).
Target (issue 5): batch 1-64 with 35B-A3B shapes reads the touched expert weights at >= 70 % of copy bandwidth.

Two paths (plugins/moe/launch.py): "grouped" (five launches, expert-major) and "pairs" (two launches, per
token-expert pair); the launcher's "auto" takes pairs up to PAIRS_MAX_TOKENS tokens. Both are timed at small
batches so that threshold can be set from a measurement.

    python bench/bench_moe.py [--quick]
    BENCH_DEVICE=cpu TRITON_INTERPRET=1 python bench/bench_moe.py --smoke   # the harness on tiny shapes, no GPU
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from _kernel_bench import DEV, SMOKE, copy_bandwidth_GBps, device_line, emit, import_plugins, timings

import_plugins()
from deploykit.ops.moe import naive_moe, route  # noqa: E402
from deploykit.plugins.moe import moe_fwd  # noqa: E402
from deploykit.plugins.moe.launch import choose_path  # noqa: E402

DIMS = {"35b-a3b": (2048, 256, 8, 512), "122b-a10b": (3072, 256, 8, 1024), "397b-a17b": (4096, 512, 10, 1024)}
# (hidden, experts, top-k, expert intermediate): shared/bench/moe_baseline.py / shared/reference/qwen35.md
TOKENS, BOTH_PATHS = (1, 8, 64, 512), (1, 2, 4, 8)  # batch sizes; those timed on both paths
if SMOKE:  # tiny experts on the CPU interpreter; the names stay so kernel_ratios.py reads the rows
    DIMS = {"35b-a3b": (64, 16, 4, 32), "397b-a17b": (96, 24, 5, 48)}
    TOKENS, BOTH_PATHS = (1, 8, 40), (1, 8)


def torch_grouped(hidden, logits, gate_up, down, top_k, norm=1):
    """Plain PyTorch bf16 baseline: sort pairs by expert, one matmul pair per expert hit (a host sync per call)."""
    w, idx = route(logits, top_k, norm)
    flat = idx.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=gate_up.shape[0]).tolist()
    tok = order // top_k
    out = torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device)
    start = 0
    for e, c in enumerate(counts):
        if c:
            rows = tok[start : start + c]
            gu = hidden[rows] @ gate_up[e].t()
            g, u = gu.chunk(2, dim=-1)
            y = (F.silu(g) * u) @ down[e].t()
            out.index_add_(0, rows, y.float() * w.reshape(-1)[order[start : start + c], None])
            start += c
    return out.to(hidden.dtype)


def make(name, tokens):
    H, E, k, I = DIMS[name]  # noqa: E741 (contract symbol I)
    torch.manual_seed(0)
    gate_up = (
        torch.randn(E, 2 * I, H, device=DEV, dtype=torch.bfloat16) * 0.02
    )  # moe_baseline: normal(0, 0.02)
    down = torch.randn(E, H, I, device=DEV, dtype=torch.bfloat16) * 0.02
    router = torch.randn(E, H, device=DEV, dtype=torch.bfloat16) * 0.02
    x = torch.randn(tokens, H, device=DEV, dtype=torch.bfloat16)
    return x, x @ router.t(), gate_up, down, k


def case(name, tokens, copy_gbps, path="auto", tiles=None, check=True):
    x, logits, gate_up, down, k = make(name, tokens)
    H, _, _, I = DIMS[name]  # noqa: E741 (contract symbol I)
    distinct = int(route(logits, k, 1)[1].unique().numel())
    touched = distinct * 3 * I * H * 2
    chosen = choose_path(tokens, path)
    row = {
        "model": name,
        "tokens": tokens,
        "path": chosen,
        "auto": path == "auto",  # the launcher's default choice: the row the issue-5 target is read from
        "distinct_experts": distinct,
        "touched_MB": round(touched / 1e6, 1),
    }
    if tiles:
        row["tiles"] = tiles
    r = timings(lambda: moe_fwd(x, logits, gate_up, down, k, 1, path=chosen, tiles=tiles))
    for key in ("throughput_ms", "graph_ms"):
        if key in r:
            gb = touched / (r[key] / 1e3) / 1e9
            r[key.replace("_ms", "_GBps")] = round(gb)
            r[key.replace("_ms", "_pct_of_copy")] = round(100 * gb / copy_gbps, 1)
    row.update(r)
    if check:
        out = moe_fwd(x, logits, gate_up, down, k, 1, path=chosen, tiles=tiles)
        ref = naive_moe(x, logits, gate_up, down, k, 1)
        row["max_err_over_max_ref"] = float(
            f"{((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item():.3g}"
        )
        if path == "auto":
            base = timings(
                lambda: torch_grouped(x, logits, gate_up, down, k), n_lat=10, n_thr=10, graph=False
            )
            row["torch_grouped_throughput_ms"] = base["throughput_ms"]
    emit(row)
    return r.get("graph_ms", r["throughput_ms"])


def plan(quick: bool) -> list[tuple[str, int, str, dict | None]]:
    """(model, tokens, path, tiles) of every case main() times, in order (precompile.py compiles them)."""
    cases = []
    if not quick:  # decode tile sweeps on the target model (checked too: tiles change the sums)
        for tokens in (1, 64):
            for bn_gu in (16, 32, 64):
                for bn_down in (32, 64, 128):  # BK=64 is the prefill default; decode streams long K rows
                    cases.append(
                        ("35b-a3b", tokens, "grouped", dict(BM=16, BN_GU=bn_gu, BN_DOWN=bn_down, BK=128))
                    )
        for bn_gu in (8, 16, 32):
            for bn_down in (8, 16, 32):
                for bk in (128, 256, 512):
                    cases.append(("35b-a3b", 1, "pairs", dict(BN_GU=bn_gu, BN_DOWN=bn_down, BK=bk)))
    elif (
        not SMOKE
    ):  # quick: two more K steps (256 is the default) of the pairs path at batch 1, furthest from the target,
        # and 8-row down tiles: 256 down programs instead of 128 for 132 SMs, 72 registers instead of 141
        # (bench/static_resources.py's reader; the default's one program per SM may not hide the latency)
        cases += [("35b-a3b", 1, "pairs", dict(BN_GU=16, BN_DOWN=16, BK=bk)) for bk in (128, 512)]
        cases += [("35b-a3b", 1, "pairs", dict(BN_GU=16, BN_DOWN=8, BK=256))]
    for name in DIMS:
        for tokens in sorted(set(TOKENS) | set(BOTH_PATHS)):
            if name != "35b-a3b" and tokens == 512 and quick:
                continue
            cases.append((name, tokens, "auto", None))  # the launcher's default path
            if tokens in BOTH_PATHS:
                cases.append((name, tokens, "grouped" if choose_path(tokens) == "pairs" else "pairs", None))
    return cases


def main() -> None:
    quick = "--quick" in sys.argv or SMOKE
    copy_gbps = copy_bandwidth_GBps()
    emit({**device_line(), "copy_GBps": copy_gbps})
    for name, tokens, path, tiles in plan(quick):
        case(name, tokens, copy_gbps, path=path, tiles=tiles)
        if DEV == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
