"""Memory model per GPU: weights under the layout, KV cache, Gated DeltaNet state, activations, overhead.

A model instance spans tp x ep x pp GPUs of one kind:
  * pp splits the decoder layers into contiguous stages (embedding and vision tower on the first, final norm,
    lm_head and the MTP layer on the last; a tied lm_head is a second copy of the embedding when pp > 1);
  * tp shards attention / GDN heads, dense and shared-expert FFNs, the vision tower and the vocabulary;
  * ep (MoE only) shards the routed experts; attention runs data-parallel over the ep ranks (each rank holds
    the non-expert weights and the KV / state of its own sequences), so an instance serves ep x (batch per rank).
The worst stage sets the per-GPU figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deploykit.planner.anatomy import DTYPE_BYTES, Anatomy
from deploykit.planner.gpus import GpuProfile, runtime

GIB = 1024**3


@dataclass(frozen=True)
class Options:
    """What the user asked for (resolved defaults)."""

    context: int = 32768
    batch: int = 1
    kv_dtype: str = "bf16"
    state_dtype: str = "fp32"
    vision: bool = True
    mtp: bool = True
    mem_util: float = 0.90
    os_reserve_gib: float | None = None


@dataclass(frozen=True)
class Layout:
    tp: int = 1
    ep: int = 1
    pp: int = 1

    @property
    def gpus(self) -> int:
        return self.tp * self.ep * self.pp


@dataclass
class Stage:
    """Per-GPU figures of one pipeline stage."""

    weights: float  # bytes held
    weights_read: float  # non-expert bytes read per decode step (embedding rows, vision and MTP not read)
    expert_bytes: float  # bytes of ONE routed expert of one layer on one GPU (tp-sharded), 0 for dense
    moe_layers: int
    dense_params: float  # non-expert parameters per GPU that each token multiplies (for FLOPs)
    expert_params: float  # parameters of one routed expert, per GPU (tp-sharded)
    n_full: int
    n_linear: int
    n_layers: int
    kv_per_token: float  # bytes per token of context per sequence (held: the MTP layer's KV included)
    kv_read_per_token: float  # of those, read by a decode step (the MTP layer is not run by the plan)
    state_per_seq: float  # recurrent + conv state bytes per sequence
    logits_per_seq: float  # fp32 logits of the last stage during decode
    activations: float  # prefill-chunk workspace
    overhead: float


def _split(n: int, parts: int) -> list[range]:
    base, extra = divmod(n, parts)
    out, start = [], 0
    for s in range(parts):
        size = base + (1 if s < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


def _activation_bytes(anat: Anatomy, tp: int, chunk: int) -> float:
    """Largest prefill chunk: residual + normed hidden + the widest per-layer intermediate, in bf16."""
    t = anat.spec.text
    h = t.hidden_size
    conv_dim = 2 * t.linear_num_key_heads * t.linear_key_head_dim + t.linear_num_value_heads * t.linear_value_head_dim
    value_dim = t.linear_num_value_heads * t.linear_value_head_dim
    gdn = (2 * conv_dim + 2 * value_dim + 2 * t.linear_num_value_heads) / tp  # qkv before/after conv, z, out, a/b
    attn = (3 * t.num_attention_heads + 2 * t.num_key_value_heads) * t.head_dim / tp  # q+gate, k, v, attn out
    if t.num_experts:
        mlp = t.num_experts_per_tok * (3 * t.moe_intermediate_size / tp + h) + 3 * (t.shared_expert_intermediate_size or 0) / tp
    else:
        mlp = 3 * t.intermediate_size / tp
    return chunk * runtime("activation_dtype_bytes") * (2 * h + max(gdn, attn, mlp))


def _overhead(gpu: GpuProfile, layout: Layout) -> float:
    gib = runtime("cuda_context_gib")
    gib += runtime("runtime_workspace_unified_gib" if gpu.unified_memory else "runtime_workspace_gib")
    if layout.gpus > 1:
        gib += runtime("nccl_buffers_gib")
    return gib * GIB


def capacity_bytes(gpu: GpuProfile, opts: Options) -> float:
    """Usable bytes per GPU under the utilisation cap (unified memory: after the OS reserve)."""
    usable = gpu.usable_gib
    if gpu.unified_memory:
        reserve = opts.os_reserve_gib if opts.os_reserve_gib is not None else runtime("unified_memory_os_reserve_gib")
        usable -= reserve
    return max(0.0, usable) * opts.mem_util * GIB


_PREFIX: dict = {}


def _prefix(anat: Anatomy, precision: str) -> dict[str, list[float]]:
    """Running sums over the decoder layers (bytes per shard class, parameters, full-attention count)."""
    key = (id(anat), precision)
    hit = _PREFIX.get(key)
    if hit and hit[0] is anat:
        return hit[1]
    cols = {"rep": [0.0], "tp": [0.0], "exp": [0.0], "p_rep": [0.0], "p_tp": [0.0], "full": [0]}
    for layer in anat.layers:
        b, p = layer.weights.nbytes[precision], layer.weights.params
        for col, value in (("rep", b["rep"]), ("tp", b["tp"]), ("exp", b["exp"]), ("p_rep", p["rep"]),
                           ("p_tp", p["tp"]), ("full", layer.kind == "full_attention")):
            cols[col].append(cols[col][-1] + value)
    _PREFIX[key] = (anat, cols)
    return cols


def stages(anat: Anatomy, precision: str, layout: Layout, opts: Options, gpu: GpuProfile) -> list[Stage]:
    """Per-GPU cost of every pipeline stage of one instance."""
    t = anat.spec.text
    tp, ep = layout.tp, layout.ep
    kv_layer = anat.kv_bytes_per_token_layer(opts.kv_dtype) / tp
    state_layer = (anat.recurrent_state_bytes_layer(opts.state_dtype) + anat.conv_state_bytes_layer()) / tp
    act = _activation_bytes(anat, tp, min(opts.context, runtime("prefill_chunk_tokens")))
    overhead = _overhead(gpu, layout)
    out = []
    cols = _prefix(anat, precision)
    parts = _split(len(anat.layers), layout.pp)
    for s, idx in enumerate(parts):
        first, last = s == 0, s == layout.pp - 1
        span = {c: v[idx.stop] - v[idx.start] for c, v in cols.items()}
        layers = anat.layers[idx.start:idx.stop]
        read = span["rep"] + span["tp"] / tp
        w = read + span["exp"] / (tp * ep)
        n_full = int(span["full"])
        dense_params = span["p_rep"] + span["p_tp"] / tp
        extra_w = 0.0
        if first:
            extra_w += anat.embed.per_gpu(precision, tp, ep)
            if opts.vision:
                extra_w += anat.vision.per_gpu(precision, tp, ep)
        if last:
            head = anat.embed if anat.spec.tie_word_embeddings else anat.lm_head
            head_w = head.per_gpu(precision, tp, ep)
            tied_shared = anat.spec.tie_word_embeddings and first
            extra_w += anat.final_norm.per_gpu(precision, tp, ep) + (0 if tied_shared else head_w)
            read += head_w
            dense_params += head.total / tp
            if opts.mtp:
                extra_w += anat.mtp.per_gpu(precision, tp, ep)
                n_full_mtp = t.mtp_num_hidden_layers
            else:
                n_full_mtp = 0
        else:
            n_full_mtp = 0
        moe_layers = len(layers) if t.num_experts else 0
        e = t.num_experts or 1
        exp_bytes = layers[0].weights.nbytes[precision]["exp"] / e / tp if moe_layers else 0.0
        exp_params = layers[0].weights.params["exp"] / e / tp if moe_layers else 0.0
        out.append(Stage(
            weights=w + extra_w, weights_read=read, expert_bytes=exp_bytes, moe_layers=moe_layers,
            dense_params=dense_params, expert_params=exp_params, n_full=n_full, n_linear=len(layers) - n_full,
            n_layers=len(layers), kv_per_token=kv_layer * (n_full + n_full_mtp), kv_read_per_token=kv_layer * n_full,
            state_per_seq=state_layer * (len(layers) - n_full),
            logits_per_seq=(t.vocab_size / tp) * DTYPE_BYTES["fp32"] if last else 0.0,
            activations=act, overhead=overhead,
        ))
    return out


def per_seq_bytes(st: Stage, context: int) -> float:
    return st.kv_per_token * context + st.state_per_seq + st.logits_per_seq


def max_batch_per_rank(sts: list[Stage], capacity: float, context: int) -> int:
    """Most sequences one attention rank can hold at `context` (0 when the weights alone do not fit)."""
    best = None
    for st in sts:
        free = capacity - st.weights - st.activations - st.overhead
        per = per_seq_bytes(st, context)
        n = math.floor(free / per) if free > 0 else 0
        best = n if best is None else min(best, n)
    return max(0, best or 0)


def breakdown(sts: list[Stage], batch_per_rank: int, context: int) -> dict[str, float]:
    """The memory terms (bytes) of the fullest stage at `batch_per_rank` sequences."""
    rows = []
    for st in sts:
        kv = st.kv_per_token * context * batch_per_rank
        row = {
            "weights": st.weights, "kv_cache": kv, "linear_state": st.state_per_seq * batch_per_rank,
            "activations": st.activations + st.logits_per_seq * batch_per_rank, "overhead": st.overhead,
        }
        row["total_per_gpu"] = sum(row.values())
        rows.append(row)
    return max(rows, key=lambda r: r["total_per_gpu"])
