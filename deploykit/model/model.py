"""Qwen3.5 text model (dense and MoE) written for export: explicit state in, new state out.

    logits, new_state = model(input_ids, position_ids, attention_mask, state)

input_ids [B,T] int64, position_ids [B,T] int64, attention_mask [B,P+T] int64 (1 = real token, 0 = left
padding), state = flat tuple in layer order (see `state_names`): a full-attention layer carries
key/value [B,Hkv,P,D] (activation dtype), a Gated DeltaNet layer conv [B,C,K-1] (activation dtype) and
recurrent [B,Hv,Dk,Dv] (fp32). One forward serves prefill (P=0) and decode (T=1); no Python branches on
tensor values, so torch.export keeps B, T and P symbolic. Gated DeltaNet, causal conv and MoE are the
contract's custom ops (torch.ops.deploykit.*), one graph node each. Numerics follow transformers 5.23
modeling_qwen3_5(_moe).py; parameter names are transformers' minus the `model.` prefix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import torch_ops  # noqa: F401  (registers torch.ops.deploykit.*)
from ..ops.contract import OP_SET_VERSION
from .config import TextConfig

PV = str(OP_SET_VERSION)  # plugin_version attribute, passed explicitly (torch.export drops defaults)


class RMSNorm(nn.Module):
    """Zero-centred RMSNorm: x / rms(x) * (1 + w), in fp32 (Qwen3_5RMSNorm)."""

    def __init__(self, dim: int, eps: float, **factory):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim, **factory))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * (1.0 + self.weight.float())).type_as(x)


class GatedRMSNorm(nn.Module):
    """w * norm(x) * silu(z), norm before gate (Qwen3_5RMSNormGated)."""

    def __init__(self, dim: int, eps: float, **factory):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, **factory))

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        xf = x.float()
        y = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)
        return (self.weight * y * F.silu(z.float())).to(x.dtype)


def linear(i: int, o: int, factory: dict) -> nn.Linear:
    return nn.Linear(i, o, bias=False, **factory)


def rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Partial rotary embedding (rotate_half convention) on the first cos.shape[-1] dims. x [B,H,T,D]."""
    r = cos.shape[-1]
    x_rot, x_pass = x[..., :r], x[..., r:]
    x1, x2 = x_rot[..., : r // 2], x_rot[..., r // 2:]
    rotated = torch.cat((-x2, x1), dim=-1)
    return torch.cat((x_rot * cos + rotated * sin, x_pass), dim=-1)


class Attention(nn.Module):
    """Gated full attention: doubled q_proj (per head [q | gate]), q/k RMSNorm, partial RoPE, GQA."""

    def __init__(self, c: TextConfig, factory: dict):
        super().__init__()
        self.h, self.hkv, self.d = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.q_proj = linear(c.hidden_size, self.h * self.d * 2, factory)
        self.k_proj = linear(c.hidden_size, self.hkv * self.d, factory)
        self.v_proj = linear(c.hidden_size, self.hkv * self.d, factory)
        self.o_proj = linear(self.h * self.d, c.hidden_size, factory)
        self.q_norm = RMSNorm(self.d, c.rms_norm_eps, **factory)
        self.k_norm = RMSNorm(self.d, c.rms_norm_eps, **factory)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, bias: Tensor, past_k: Tensor, past_v: Tensor):
        # x [B,T,H]; cos/sin [B,1,T,R]; bias [B,1,T,P+T] fp32; past_k/v [B,Hkv,P,D]
        q, gate = self.q_proj(x).unflatten(-1, (self.h, 2 * self.d)).chunk(2, dim=-1)  # [B,T,H,D] each
        q = rope(self.q_norm(q).transpose(1, 2), cos, sin)  # [B,H,T,D]
        k = rope(self.k_norm(self.k_proj(x).unflatten(-1, (self.hkv, self.d))).transpose(1, 2), cos, sin)
        v = self.v_proj(x).unflatten(-1, (self.hkv, self.d)).transpose(1, 2)  # [B,Hkv,T,D]
        k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)  # [B,Hkv,P+T,D] = present
        rep = self.h // self.hkv  # query heads per KV head
        kr = k[:, :, None].expand(-1, -1, rep, -1, -1).flatten(1, 2)  # [B,H,P+T,D], head h uses KV h // rep
        vr = v[:, :, None].expand(-1, -1, rep, -1, -1).flatten(1, 2)
        scores = (q @ kr.transpose(-1, -2)) * self.d ** -0.5 + bias  # [B,H,T,P+T]
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = (probs @ vr).transpose(1, 2).flatten(-2)  # [B,T,H*D]
        return self.o_proj(out * torch.sigmoid(gate.flatten(-2))), k, v


class GatedDeltaNet(nn.Module):
    """Linear-attention layer: fused qkv projection, causal conv + SiLU, gated delta rule, gated RMSNorm."""

    def __init__(self, c: TextConfig, factory: dict):
        super().__init__()
        self.hk, self.hv = c.linear_num_key_heads, c.linear_num_value_heads
        self.dk, self.dv = c.linear_key_head_dim, c.linear_value_head_dim
        self.in_proj_qkv = linear(c.hidden_size, c.conv_dim, factory)
        self.in_proj_z = linear(c.hidden_size, self.hv * self.dv, factory)
        self.in_proj_b = linear(c.hidden_size, self.hv, factory)
        self.in_proj_a = linear(c.hidden_size, self.hv, factory)
        self.conv1d = nn.Module()
        self.conv1d.weight = nn.Parameter(torch.empty(c.conv_dim, 1, c.linear_conv_kernel_dim, **factory))
        self.dt_bias = nn.Parameter(torch.ones(self.hv, **factory))
        self.A_log = nn.Parameter(torch.zeros(self.hv, **factory))
        self.norm = GatedRMSNorm(self.dv, c.rms_norm_eps, **factory)
        self.out_proj = linear(self.hv * self.dv, c.hidden_size, factory)

    def forward(self, x: Tensor, token_mask: Tensor, conv: Tensor, rec: Tensor):
        # x [B,T,H]; token_mask [B,T] (0 = left padding); conv [B,C,K-1]; rec [B,Hv,Dk,Dv] fp32
        x = x * token_mask[..., None].to(x.dtype)  # padded tokens write nothing (transformers does the same)
        mixed = self.in_proj_qkv(x).transpose(1, 2)  # [B,C,T]
        mixed, conv = torch.ops.deploykit.causal_conv1d(mixed, conv, self.conv1d.weight.squeeze(1), "silu", PV)
        q, k, v = mixed.transpose(1, 2).split([self.hk * self.dk, self.hk * self.dk, self.hv * self.dv], dim=-1)
        q, k = q.unflatten(-1, (self.hk, self.dk)), k.unflatten(-1, (self.hk, self.dk))  # [B,T,Hk,Dk]
        v = v.unflatten(-1, (self.hv, self.dv))  # [B,T,Hv,Dv]
        beta = torch.sigmoid(self.in_proj_b(x))  # [B,T,Hv]
        g = -self.A_log.float().exp() * F.softplus(self.in_proj_a(x).float() + self.dt_bias)  # [B,T,Hv] fp32
        o, rec = torch.ops.deploykit.gated_delta_rule(q, k, v, g, beta, rec, self.dk ** -0.5, 1, PV)
        z = self.in_proj_z(x).unflatten(-1, (self.hv, self.dv))
        return self.out_proj(self.norm(o, z).flatten(-2)), conv, rec


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, hidden: int, inter: int, factory: dict):
        super().__init__()
        self.gate_proj = linear(hidden, inter, factory)
        self.up_proj = linear(hidden, inter, factory)
        self.down_proj = linear(inter, hidden, factory)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Experts(nn.Module):
    def __init__(self, c: TextConfig, factory: dict):
        super().__init__()
        e, i, h = c.num_experts, c.moe_intermediate_size, c.hidden_size
        self.gate_up_proj = nn.Parameter(torch.empty(e, 2 * i, h, **factory))  # rows [gate; up]
        self.down_proj = nn.Parameter(torch.empty(e, h, i, **factory))


class SparseMoE(nn.Module):
    """Routed experts (custom op) plus a sigmoid-gated shared expert (plain graph)."""

    def __init__(self, c: TextConfig, factory: dict):
        super().__init__()
        self.top_k, self.norm_topk_prob = c.num_experts_per_tok, int(c.norm_topk_prob)
        self.gate = linear(c.hidden_size, c.num_experts, factory)  # router
        self.experts = Experts(c, factory)
        self.shared_expert = MLP(c.hidden_size, c.shared_expert_intermediate_size, factory)
        self.shared_expert_gate = linear(c.hidden_size, 1, factory)

    def forward(self, x: Tensor) -> Tensor:
        h = x.flatten(0, 1)  # [N,H], N = B*T
        routed = torch.ops.deploykit.moe(h, self.gate(h), self.experts.gate_up_proj, self.experts.down_proj,
                                         self.top_k, self.norm_topk_prob, PV)
        shared = torch.sigmoid(self.shared_expert_gate(h)) * self.shared_expert(h)
        return (routed + shared).view_as(x)


class DecoderLayer(nn.Module):
    def __init__(self, c: TextConfig, kind: str, factory: dict):
        super().__init__()
        self.kind = kind
        if kind == "linear_attention":
            self.linear_attn = GatedDeltaNet(c, factory)
        else:
            self.self_attn = Attention(c, factory)
        self.mlp = SparseMoE(c, factory) if c.is_moe else MLP(c.hidden_size, c.intermediate_size, factory)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps, **factory)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps, **factory)

    def forward(self, x, cos, sin, bias, token_mask, s0: Tensor, s1: Tensor):
        h = self.input_layernorm(x)
        if self.kind == "linear_attention":  # static per layer (from config), not a tensor-value branch
            h, s0, s1 = self.linear_attn(h, token_mask, s0, s1)
        else:
            h, s0, s1 = self.self_attn(h, cos, sin, bias, s0, s1)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x)), s0, s1


class Qwen35(nn.Module):
    """The text model. Build on device='meta' to get shapes without memory; load with model.loader."""

    def __init__(self, config: TextConfig, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        super().__init__()
        self.config = c = config
        factory = {"dtype": dtype, "device": device}
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size, **factory)
        self.layers = nn.ModuleList(DecoderLayer(c, kind, factory) for kind in c.layer_types)
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps, **factory)
        self.lm_head = linear(c.hidden_size, c.vocab_size, factory)
        if c.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    # state layout --------------------------------------------------------------------------------
    def state_names(self, prefix: str = "past") -> list[str]:
        """['past.0.conv', 'past.0.recurrent', 'past.1.key', 'past.1.value', ...]; prefix='present' for outputs."""
        names = []
        for i, kind in enumerate(self.config.layer_types):
            parts = ("conv", "recurrent") if kind == "linear_attention" else ("key", "value")
            names += [f"{prefix}.{i}.{p}" for p in parts]
        return names

    def state_shapes(self, batch: int, past: int) -> list[tuple[int, ...]]:
        c = self.config
        shapes = []
        for kind in c.layer_types:
            if kind == "linear_attention":
                shapes += [(batch, c.conv_dim, c.linear_conv_kernel_dim - 1),
                           (batch, c.linear_num_value_heads, c.linear_key_head_dim, c.linear_value_head_dim)]
            else:
                shapes += [(batch, c.num_key_value_heads, past, c.head_dim)] * 2
        return shapes

    def state_dtypes(self, dtype: torch.dtype) -> list[torch.dtype]:
        """Recurrent states are fp32; conv and KV states use the activation dtype."""
        return [torch.float32 if n.endswith("recurrent") else dtype for n in self.state_names()]

    def empty_state(self, batch: int, dtype: torch.dtype | None = None, device=None) -> tuple[Tensor, ...]:
        """The state before the first token: zeros, P = 0. Distinct tensors (export merges aliased inputs)."""
        dtype = dtype or self.embed_tokens.weight.dtype
        device = device or self.embed_tokens.weight.device
        return tuple(torch.zeros(s, dtype=dt, device=device)
                     for s, dt in zip(self.state_shapes(batch, 0), self.state_dtypes(dtype), strict=True))

    # forward -------------------------------------------------------------------------------------
    def rotary(self, position_ids: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """cos/sin [B,1,T,R]: text-only mRoPE is plain partial RoPE (the three position rows are equal)."""
        c, r = self.config, self.config.rotary_dim
        inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, r, 2, device=position_ids.device).float() / r))
        freqs = position_ids[..., None].float() * inv_freq  # [B,T,R/2]
        emb = torch.cat((freqs, freqs), dim=-1)[:, None]  # [B,1,T,R]
        return emb.cos().to(dtype), emb.sin().to(dtype)

    @staticmethod
    def attention_bias(attention_mask: Tensor, t: int) -> Tensor:
        """[B,1,T,S] fp32: 0 where query i may see key j (j <= S-T+i and key not padding), finfo.min elsewhere.

        finfo.min rather than -inf: a fully masked row (a padding query) stays finite instead of NaN."""
        s = attention_mask.shape[1]
        i = torch.arange(t, device=attention_mask.device)[:, None]
        j = torch.arange(s, device=attention_mask.device)[None, :]
        allowed = (j <= i + (s - t))[None] & (attention_mask[:, None, :] != 0)  # [B,T,S]
        zero = torch.zeros((), dtype=torch.float32, device=attention_mask.device)
        return torch.where(allowed, zero, torch.finfo(torch.float32).min)[:, None]

    def forward(self, input_ids: Tensor, position_ids: Tensor, attention_mask: Tensor,
                state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        t = input_ids.shape[1]
        x = self.embed_tokens(input_ids)  # [B,T,H]
        cos, sin = self.rotary(position_ids, x.dtype)
        bias = self.attention_bias(attention_mask, t)
        # mask of the new tokens [B,T]; gather, not a slice: a slice makes torch.export guard P != 0
        cols = torch.arange(t, device=attention_mask.device) + (attention_mask.shape[1] - t)
        token_mask = attention_mask.gather(1, cols[None].expand(input_ids.shape[0], t))
        new_state = []
        for i, layer in enumerate(self.layers):
            x, s0, s1 = layer(x, cos, sin, bias, token_mask, state[2 * i], state[2 * i + 1])
            new_state += [s0, s1]
        return self.lm_head(self.norm(x)), tuple(new_state)
