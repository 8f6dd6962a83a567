"""Derived sizes of a Qwen3.5 checkpoint: parameters per component, bytes per precision, state per sequence.

Shapes follow transformers 5.23 `modeling_qwen3_5*.py` (and vLLM `qwen3_5_mtp.py` for MTP), tabulated in
../shared/reference/qwen35.md section 3. Every tensor is classified twice:
  * shard: how tensor parallelism splits it -- "tp" (heads / FFN / vocabulary-parallel), "rep" (replicated:
    norms, router, the 1-row shared-expert gate), "exp" (routed experts: split over tp x ep);
  * qclass: how a precision stores it --
      "linear": fp8 = e4m3 + one fp32 scale per 128x128 block; int4 = 4-bit + fp16 scale and 4-bit zero per 128 inputs;
      "gate":   like "linear" in fp8, kept bf16 in int4 (router `mlp.gate`, `shared_expert_gate`, GDN `in_proj_a/b`);
      "keep":   bf16 in every precision (embeddings, lm_head, norms, conv1d, A_log, dt_bias, the vision tower).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from deploykit.planner.models import ModelSpec

PRECISIONS = ("bf16", "fp8", "int4")
SHARDS = ("rep", "tp", "exp")
BF16_BYTES = 2
FP8_BLOCK = 128  # Qwen FP8 checkpoints: weight_block_size [128, 128], fp32 scale per block (issue 2, item 4)
FP8_SCALE_BYTES = 4
INT4_GROUP = 128  # AWQ/GPTQ group size 128 (issue 2, item 4)
INT4_GROUP_BYTES = 2 + 0.5  # fp16 scale + one packed 4-bit zero point per group (GPTQ qzeros layout)
DTYPE_BYTES = {"fp32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2, "fp8": 1}


def tensor_bytes(out: int, inn: int, qclass: str, precision: str) -> float:
    """Bytes of one [out, inn] weight (inn = 1 for vectors) stored in `precision`."""
    if precision == "bf16" or qclass == "keep" or (precision == "int4" and qclass == "gate"):
        return out * inn * BF16_BYTES
    if precision == "fp8":
        return out * inn + math.ceil(out / FP8_BLOCK) * math.ceil(inn / FP8_BLOCK) * FP8_SCALE_BYTES
    if precision == "int4":
        return out * inn / 2 + out * math.ceil(inn / INT4_GROUP) * INT4_GROUP_BYTES
    raise ValueError(precision)


@dataclass
class Group:
    """Parameters and bytes of a set of tensors, per shard class."""

    params: dict = field(default_factory=lambda: dict.fromkeys(SHARDS, 0))
    nbytes: dict = field(default_factory=lambda: {p: dict.fromkeys(SHARDS, 0.0) for p in PRECISIONS})

    def add(self, out: int, inn: int, shard: str, qclass: str, copies: int = 1) -> None:
        self.params[shard] += out * inn * copies
        for p in PRECISIONS:
            self.nbytes[p][shard] += tensor_bytes(out, inn, qclass, p) * copies

    def extend(self, other: Group) -> None:
        for s in SHARDS:
            self.params[s] += other.params[s]
            for p in PRECISIONS:
                self.nbytes[p][s] += other.nbytes[p][s]

    @property
    def total(self) -> int:
        return sum(self.params.values())

    def bytes_total(self, precision: str) -> float:
        return sum(self.nbytes[precision].values())

    def per_gpu(self, precision: str, tp: int, ep: int) -> float:
        b = self.nbytes[precision]
        return b["rep"] + b["tp"] / tp + b["exp"] / (tp * ep)


@dataclass
class Layer:
    kind: str  # "full_attention" | "linear_attention"
    weights: Group


def _full_attention(t, g: Group) -> None:
    h, hd, nq, nkv = t.hidden_size, t.head_dim, t.num_attention_heads, t.num_key_value_heads
    g.add(2 * nq * hd, h, "tp", "linear")  # q_proj: query and sigmoid output gate interleaved
    g.add(nkv * hd, h, "tp", "linear", copies=2)  # k_proj, v_proj
    g.add(h, nq * hd, "tp", "linear")  # o_proj
    g.add(hd, 1, "rep", "keep", copies=2)  # q_norm, k_norm


def _gated_deltanet(t, g: Group) -> None:
    h, nk, nv = t.hidden_size, t.linear_num_key_heads, t.linear_num_value_heads
    dk, dv, k = t.linear_key_head_dim, t.linear_value_head_dim, t.linear_conv_kernel_dim
    conv_dim = 2 * nk * dk + nv * dv
    g.add(conv_dim, h, "tp", "linear")  # in_proj_qkv
    g.add(nv * dv, h, "tp", "linear")  # in_proj_z (output gate)
    g.add(nv, h, "tp", "gate", copies=2)  # in_proj_b (beta), in_proj_a (alpha / dt)
    g.add(conv_dim, k, "tp", "keep")  # depthwise conv1d, no bias
    g.add(nv, 1, "tp", "keep", copies=2)  # dt_bias, A_log
    g.add(dv, 1, "rep", "keep")  # RMSNormGated weight, shared by heads
    g.add(h, nv * dv, "tp", "linear")  # out_proj


def _mlp(t, g: Group) -> None:
    h = t.hidden_size
    if not t.num_experts:
        g.add(t.intermediate_size, h, "tp", "linear", copies=2)  # gate_proj, up_proj
        g.add(h, t.intermediate_size, "tp", "linear")  # down_proj
        return
    e, mi, si = t.num_experts, t.moe_intermediate_size, t.shared_expert_intermediate_size or 0
    g.add(e, h, "rep", "gate")  # router mlp.gate
    g.add(mi, h, "exp", "linear", copies=2 * e)  # experts gate/up (per expert, as in the FP8 checkpoints)
    g.add(h, mi, "exp", "linear", copies=e)  # experts down
    if si:
        g.add(si, h, "tp", "linear", copies=2)  # shared_expert gate/up
        g.add(h, si, "tp", "linear")  # shared_expert down
        g.add(1, h, "rep", "gate")  # shared_expert_gate


def _decoder_layer(t, kind: str) -> Group:
    g = Group()
    g.add(t.hidden_size, 1, "rep", "keep", copies=2)  # input / post-attention RMSNorm
    (_full_attention if kind == "full_attention" else _gated_deltanet)(t, g)
    _mlp(t, g)
    return g


def _vision(v) -> Group:
    g = Group()
    vh, vi = v.hidden_size, v.intermediate_size
    g.add(vh, v.in_channels * v.temporal_patch_size * v.patch_size**2, "tp", "keep")  # patch_embed Conv3d
    g.add(vh, 1, "tp", "keep")  # its bias
    g.add(v.num_position_embeddings, vh, "tp", "keep")  # pos_embed
    blk = Group()
    blk.add(vh, 1, "rep", "keep", copies=4)  # norm1/norm2 weight + bias
    blk.add(3 * vh, vh + 1, "tp", "keep")  # attn.qkv with bias
    blk.add(vh, vh + 1, "tp", "keep")  # attn.proj with bias
    blk.add(vi, vh + 1, "tp", "keep")  # mlp.linear_fc1 with bias
    blk.add(vh, vi, "tp", "keep")  # mlp.linear_fc2 weight
    blk.add(vh, 1, "tp", "keep")  # mlp.linear_fc2 bias
    for _ in range(v.depth):
        g.extend(blk)
    m = vh * v.spatial_merge_size**2  # merger input: spatial_merge^2 patches concatenated
    g.add(vh, 1, "rep", "keep", copies=2)  # merger LayerNorm(vh)
    g.add(m, m + 1, "tp", "keep")  # merger linear_fc1 with bias
    g.add(v.out_hidden_size, m + 1, "tp", "keep")  # merger linear_fc2 with bias
    return g


@dataclass
class Anatomy:
    """Derived sizes of one checkpoint (main model = text decoder; MTP and vision are separate components)."""

    spec: ModelSpec
    layers: list[Layer]
    embed: Group
    lm_head: Group  # empty when tie_word_embeddings (the embedding doubles as lm_head)
    final_norm: Group
    mtp: Group
    vision: Group

    @property
    def params_text(self) -> int:
        return self.embed.total + self.lm_head.total + self.final_norm.total + sum(l.weights.total for l in self.layers)

    @property
    def params_mtp(self) -> int:
        return self.mtp.total

    @property
    def params_vision(self) -> int:
        return self.vision.total

    @property
    def params_total(self) -> int:
        return self.params_text + self.params_mtp + self.params_vision

    @property
    def params_active(self) -> int:
        """Text parameters a token touches: all but the routed experts it is not sent to (qwen35.md section 4)."""
        t = self.spec.text
        if not t.num_experts:
            return self.params_text
        expert_params = sum(l.weights.params["exp"] for l in self.layers)
        return self.params_text - expert_params + expert_params * t.num_experts_per_tok // t.num_experts

    @property
    def n_full(self) -> int:
        return sum(l.kind == "full_attention" for l in self.layers)

    @property
    def n_linear(self) -> int:
        return sum(l.kind == "linear_attention" for l in self.layers)

    def kv_bytes_per_token_layer(self, kv_dtype: str = "bf16") -> int:
        """K and V of one full-attention layer for one token."""
        t = self.spec.text
        return 2 * t.num_key_value_heads * t.head_dim * DTYPE_BYTES[kv_dtype]

    def kv_bytes_per_token(self, kv_dtype: str = "bf16", mtp: bool = False) -> int:
        """Main model (plus the MTP layer's attention when `mtp`): full-attention layers only."""
        return self.kv_bytes_per_token_layer(kv_dtype) * (self.n_full + (self.spec.text.mtp_num_hidden_layers if mtp else 0))

    def recurrent_state_bytes_layer(self, state_dtype: str = "fp32") -> int:
        t = self.spec.text
        return t.linear_num_value_heads * t.linear_key_head_dim * t.linear_value_head_dim * DTYPE_BYTES[state_dtype]

    def conv_state_bytes_layer(self) -> int:
        """Last (kernel - 1) inputs of the depthwise conv over q, k and v channels, in the model dtype (bf16)."""
        t = self.spec.text
        conv_dim = 2 * t.linear_num_key_heads * t.linear_key_head_dim + t.linear_num_value_heads * t.linear_value_head_dim
        return conv_dim * (t.linear_conv_kernel_dim - 1) * BF16_BYTES

    def recurrent_state_bytes(self, state_dtype: str = "fp32") -> int:
        return self.n_linear * self.recurrent_state_bytes_layer(state_dtype)

    def conv_state_bytes(self) -> int:
        return self.n_linear * self.conv_state_bytes_layer()

    def weight_bytes(self, precision: str, *, mtp: bool = True, vision: bool = True) -> float:
        """Whole checkpoint in `precision` (the published checkpoints ship text + MTP + vision)."""
        groups = [self.embed, self.lm_head, self.final_norm, *(l.weights for l in self.layers)]
        groups += ([self.mtp] if mtp else []) + ([self.vision] if vision else [])
        return sum(g.bytes_total(precision) for g in groups)


def _build(spec: ModelSpec) -> Anatomy:
    t = spec.text
    h, v = t.hidden_size, t.vocab_size
    embed, lm_head, final_norm, mtp = Group(), Group(), Group(), Group()
    embed.add(v, h, "tp", "keep")  # embed_tokens, vocabulary-parallel
    if not spec.tie_word_embeddings:
        lm_head.add(v, h, "tp", "keep")
    final_norm.add(h, 1, "rep", "keep")
    layers = [Layer(kind, _decoder_layer(t, kind)) for kind in t.resolved_layer_types()]
    if t.mtp_num_hidden_layers:
        mtp.add(h, 2 * h, "tp", "linear")  # mtp.fc: concat(embedding, hidden) -> hidden
        mtp.add(h, 1, "rep", "keep", copies=3)  # pre_fc_norm_embedding, pre_fc_norm_hidden, norm
        for _ in range(t.mtp_num_hidden_layers):
            mtp.extend(_decoder_layer(t, "full_attention"))  # shares embed_tokens and lm_head
    vision = _vision(spec.vision) if spec.vision else Group()
    return Anatomy(spec, layers, embed, lm_head, final_norm, mtp, vision)


_CACHE: dict[int, Anatomy] = {}


def anatomy(spec: ModelSpec) -> Anatomy:
    """Derived sizes, cached per spec object."""
    key = id(spec)
    if key not in _CACHE or _CACHE[key].spec is not spec:
        _CACHE[key] = _build(spec)
    return _CACHE[key]

