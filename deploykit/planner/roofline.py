"""Throughput roofline per model instance (issue 2, item 7).

stage time = max(bytes moved / (bandwidth x eff_bw), FLOPs / (peak x eff_compute)) + communication
  decode bytes: non-expert weights of the stage + distinct routed experts the batch touches
                (E * (1 - (1 - k/E)^B) per MoE layer, shared expert included in the non-expert part)
                + KV read for the full context + recurrent/conv state read and written;
  decode FLOPs: 2 x (dense + k routed experts) parameters per token + attention over the context + GDN update;
  prefill: one chunk of min(context, 8192) tokens, attention over half the context on average;
  communication: 2 all-reduces per layer over tp (ring: 2 (tp-1)/tp x bytes / link + latency), a dispatch and a
                 combine all-to-all per MoE layer over ep, one activation send between pipeline stages.
Every sequence is assumed to sit at the full requested context, so decode speeds are a lower bound for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deploykit.planner.anatomy import Anatomy
from deploykit.planner.gpus import (
    GpuProfile,
    compute_tflops,
    efficiency,
    link_gbs,
    planner_constants,
    runtime,
)
from deploykit.planner.memory import Layout, Options, Stage

ACT_BYTES = 2  # bf16 activations on the wire


@dataclass
class Perf:
    decode_tok_s_b1: float
    decode_tok_s_max: float  # one instance at its largest batch
    prefill_tok_s: float  # one instance, all attention ranks busy
    ttft_ms: float  # a prompt as long as the requested context


def expected_experts(n_experts: int, top_k: int, tokens: float) -> float:
    """Distinct experts a batch of `tokens` touches under uniform routing: E (1 - (1 - k/E)^B)."""
    return n_experts * (1.0 - (1.0 - top_k / n_experts) ** tokens)


class _Machine:
    """Rates of one GPU kind for one precision."""

    def __init__(self, gpu: GpuProfile, precision: str):
        eff = efficiency(gpu)
        self.bw = gpu.memory_bandwidth_tbs * 1e12 * eff["bandwidth"]
        factor = eff["compute_fp8"] if precision == "fp8" else eff["compute_bf16"]
        self.flops = compute_tflops(gpu, precision) * 1e12 * factor
        link, kind = link_gbs(gpu)
        self.link = link * 1e9
        lat = planner_constants()["runtime"]["allreduce_latency_us"]
        self.latency = (lat["pcie"] if kind == "pcie" else lat["nvlink"]) * 1e-6


def _comm(st: Stage, anat: Anatomy, lay: Layout, m: _Machine, tokens_rank: float, last: bool) -> float:
    t = anat.spec.text
    msg = tokens_rank * t.hidden_size * ACT_BYTES
    time = 0.0
    if lay.tp > 1:
        time += 2 * st.n_layers * (m.latency + 2 * (lay.tp - 1) / lay.tp * msg / m.link)
    if lay.ep > 1 and st.moe_layers:
        time += 2 * st.moe_layers * (m.latency + t.num_experts_per_tok * msg * (lay.ep - 1) / lay.ep / m.link)
    if lay.pp > 1 and not last:
        time += m.latency + msg / m.link
    return time


def _stage_time(st, anat, lay, m, opts, tokens_rank, tokens_all, span, decode, last) -> float:
    """One forward step of a stage for `tokens_rank` tokens per attention rank (`tokens_all` over the instance)."""
    t = anat.spec.text
    k = t.num_experts_per_tok or 0
    touched = expected_experts(t.num_experts, k, tokens_all) if st.moe_layers else 0.0
    nbytes = st.weights_read + st.moe_layers * touched / lay.ep * st.expert_bytes
    if decode:
        nbytes += tokens_rank * (span * st.kv_read_per_token + 2 * st.state_per_seq)
    attn_span = span if decode else span / 2
    gdn = t.linear_num_value_heads * t.linear_key_head_dim * t.linear_value_head_dim
    flops = 2 * tokens_rank * st.dense_params
    flops += 2 * tokens_all / lay.ep * k * st.expert_params * st.moe_layers
    flops += 4 * tokens_rank * attn_span * t.num_attention_heads * t.head_dim * st.n_full / lay.tp
    flops += 6 * tokens_rank * gdn * st.n_linear / lay.tp
    return max(nbytes / m.bw, flops / m.flops) + _comm(st, anat, lay, m, tokens_rank, last)


def _decode_tok_s(sts, anat, lay, m, opts, batch: int) -> float:
    """Tokens per second of one instance decoding `batch` sequences (pp > 1: micro-batches in flight)."""
    b_rank = math.ceil(batch / lay.ep)
    micro = max(1, min(lay.pp, b_rank))
    b_micro = math.ceil(b_rank / micro)
    tokens_all = math.ceil(batch / micro)  # sequences of one micro-batch over all ep ranks (1 for batch 1)
    times = [
        _stage_time(st, anat, lay, m, opts, b_micro, tokens_all, opts.context, True, i == len(sts) - 1)
        for i, st in enumerate(sts)
    ]
    round_time = max(sum(times), micro * max(times))
    return batch / round_time


def instance_perf(sts: list[Stage], anat: Anatomy, gpu: GpuProfile, precision: str, lay: Layout,
                  opts: Options, max_batch: int) -> Perf:
    m = _Machine(gpu, precision)
    b1 = _decode_tok_s(sts, anat, lay, m, opts, 1)
    bmax = _decode_tok_s(sts, anat, lay, m, opts, max(1, max_batch))
    chunk = min(opts.context, runtime("prefill_chunk_tokens"))

    def chunk_time(prompts: int) -> float:
        """One prefill chunk on every stage, `prompts` prompts in flight (one per attention rank at most)."""
        return max(_stage_time(st, anat, lay, m, opts, chunk, chunk * prompts, opts.context, False, i == len(sts) - 1)
                   for i, st in enumerate(sts))

    one = chunk_time(1)
    prefill = lay.ep * chunk / (chunk_time(lay.ep) if lay.ep > 1 else one)  # every ep rank on its own prompt
    ttft = (math.ceil(opts.context / chunk) + lay.pp - 1) * one + 1.0 / b1  # one prompt alone
    return Perf(b1, bmax, prefill, ttft * 1e3)
