"""Layout search for one model x precision on one GPU kind (issue 2, item 6).

tp divides the attention KV heads and the Gated DeltaNet key heads (and so the query / value heads), ep divides
the routed experts (MoE only), pp splits the layers; dp replicas fill the GPUs that are left. An instance never
spans two GPU kinds, and a unified-memory device (Jetson, DGX Spark) is its own machine: one GPU per instance.
Layouts rank first by how much of the requested batch they hold (all of it beats some of it), then by aggregate
decode throughput at the requested context, then by fewer GPUs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deploykit.planner.anatomy import Anatomy
from deploykit.planner.gpus import GpuProfile
from deploykit.planner.memory import (
    GIB,
    Layout,
    Options,
    breakdown,
    capacity_bytes,
    max_batch_per_rank,
    stages,
)
from deploykit.planner.roofline import Perf, instance_perf

PP_BEYOND_FIT = 2  # per (tp, ep): the smallest pp that holds the batch and one deeper, no more (search-time bound)


@dataclass
class KindPlan:
    """Best layout on one GPU kind, or why none fits (then `layout` is the closest attempt)."""

    gpu: GpuProfile
    layout: Layout
    dp: int
    max_batch_instance: int
    memory: dict  # bytes, fullest stage, at the planned batch per rank
    capacity: float
    perf: Perf | None
    reason: str | None = None

    @property
    def fits(self) -> bool:
        return self.reason is None

    @property
    def aggregate_decode(self) -> float:
        return self.dp * self.perf.decode_tok_s_max if self.perf else 0.0

    @property
    def sequences(self) -> int:
        """Concurrent sequences at the context over all replicas on this kind."""
        return self.dp * self.max_batch_instance


def _divisors(n: int, limit: int) -> list[int]:
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


def candidate_layouts(anat: Anatomy, gpu: GpuProfile, count: int) -> list[Layout]:
    t = anat.spec.text
    if gpu.unified_memory:
        return [Layout()]
    heads = math.gcd(t.num_key_value_heads, t.linear_num_key_heads, t.num_attention_heads, t.linear_num_value_heads)
    out = []
    for tp in _divisors(heads, count):
        eps = _divisors(t.num_experts, count // tp) if t.num_experts else [1]
        for ep in eps:
            for pp in range(1, min(count // (tp * ep), len(anat.layers)) + 1):
                out.append(Layout(tp, ep, pp))
    return out


def _evaluate(anat, gpu, count, precision, opts, lay, batch_share):
    sts = stages(anat, precision, lay, opts, gpu)
    cap = capacity_bytes(gpu, opts)
    per_rank = max_batch_per_rank(sts, cap, opts.context)
    dp = count // lay.gpus
    inst_max = per_rank * lay.ep
    if per_rank < 1:
        mem = breakdown(sts, 1, opts.context)
        return KindPlan(gpu, lay, 0, 0, mem, cap, None, reason="memory")
    want_rank = min(per_rank, max(1, math.ceil(math.ceil(batch_share / dp) / lay.ep)))
    mem = breakdown(sts, want_rank, opts.context)
    perf = instance_perf(sts, anat, gpu, precision, lay, opts, inst_max)
    return KindPlan(gpu, lay, dp, inst_max, mem, cap, perf)


def best_layout(anat: Anatomy, gpu: GpuProfile, count: int, precision: str, opts: Options, batch_share: int) -> KindPlan:
    """The layout holding most of `batch_share` (up to all of it), then the highest aggregate decode throughput;
    else the attempt that came closest, with the reason."""
    best, closest = None, None
    fitted: dict[tuple[int, int], int] = {}
    for lay in candidate_layouts(anat, gpu, count):  # pp ascending within each (tp, ep)
        if fitted.get((lay.tp, lay.ep), 0) >= PP_BEYOND_FIT:
            continue  # deeper pipelines only add bubbles once the model fits with the batch
        kp = _evaluate(anat, gpu, count, precision, opts, lay, batch_share)
        if kp.fits:
            if kp.sequences >= batch_share:
                fitted[lay.tp, lay.ep] = fitted.get((lay.tp, lay.ep), 0) + 1
            key = (-min(kp.sequences, batch_share), -kp.aggregate_decode, kp.dp * lay.gpus)
            if best is None or key < best[0]:
                best = (key, kp)
        else:
            short = kp.memory["total_per_gpu"] - kp.capacity
            if closest is None or short < closest[0]:
                closest = (short, kp)
    if best:
        return best[1]
    kp = closest[1]
    m, lay = kp.memory, kp.layout
    kp.reason = (
        f"needs {m['total_per_gpu'] / GIB:.1f} GiB per GPU for one sequence at {opts.context} tokens even as "
        f"tp{lay.tp}" + (f" ep{lay.ep}" if lay.ep > 1 else "") + f" pp{lay.pp} on {lay.gpus}x {gpu.short} "
        f"(weights {m['weights'] / GIB:.1f} GiB), {kp.capacity / GIB:.1f} GiB usable per GPU"
    )
    return kp
