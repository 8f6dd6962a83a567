"""Tiny random Qwen3.5 checkpoints written by transformers' own classes (`save_pretrained`).

Tests, the exporter, validator and builder helpers and the benches all build their fixtures here, so every
component is checked against checkpoints that transformers itself wrote. Weights are randomised well away
from transformers' init (non-zero norm weights, spread A_log / dt_bias, O(1) activations) so that parity
tests are not trivially satisfied.

    make_tiny_checkpoint("dense", tmp / "dense")                         # Qwen3_5ForCausalLM layout
    make_tiny_checkpoint("moe", tmp / "moe_vl", layout="multimodal", fused_experts=True)
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

LIN, FULL = "linear_attention", "full_attention"

# Odd head counts on purpose: 3 query heads over 1 KV head, 2 key heads serving 6 value heads.
TINY_DENSE: dict[str, Any] = {
    "vocab_size": 256, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 5,
    "layer_types": [LIN, FULL, LIN, LIN, FULL], "num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 32,
    "linear_num_key_heads": 2, "linear_num_value_heads": 6, "linear_key_head_dim": 16, "linear_value_head_dim": 8,
    "linear_conv_kernel_dim": 4, "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "max_position_embeddings": 4096,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
}
TINY_MOE: dict[str, Any] = dict(
    TINY_DENSE, intermediate_size=None, num_hidden_layers=4, layer_types=[LIN, FULL, LIN, FULL],
    linear_num_key_heads=1, linear_num_value_heads=3, num_experts=6, num_experts_per_tok=2,
    moe_intermediate_size=32, shared_expert_intermediate_size=24,
)
TINY_VISION = {"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": 64,
                   "patch_size": 4, "temporal_patch_size": 2, "spatial_merge_size": 2}


def hf_classes(kind: str):
    """(text config class, ForCausalLM class) of transformers for 'dense' or 'moe'."""
    import transformers as tf

    if kind == "dense":
        return tf.Qwen3_5TextConfig, tf.Qwen3_5ForCausalLM
    if kind == "moe":
        return tf.Qwen3_5MoeTextConfig, tf.Qwen3_5MoeForCausalLM
    raise ValueError(f"kind must be 'dense' or 'moe', got {kind!r}")


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial weights: norms off their identity init, decays spread, activations O(1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("linear_attn.norm.weight"):  # gated RMSNorm: plain weight, init 1
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("norm.weight"):  # zero-centred (1 + w) RMSNorms
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("A_log"):
                p.copy_(torch.empty(p.shape).uniform_(0.5, 16, generator=gen).log())
            elif name.endswith("dt_bias"):
                p.copy_(torch.empty(p.shape).uniform_(-1, 2, generator=gen))
            elif name.endswith("embed_tokens.weight"):
                p.copy_(torch.randn(p.shape, generator=gen))
            elif "conv1d" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            else:  # [.., out, in] projections and experts: unit-variance outputs (router a bit sharper)
                scale = 2.0 if name.endswith("mlp.gate.weight") else 1.0
                p.copy_(scale * torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1]))


def tiny_config(kind: str, **overrides):
    cfg_cls, _ = hf_classes(kind)
    fields = dict(TINY_DENSE if kind == "dense" else TINY_MOE)
    fields.update(overrides)
    if "num_hidden_layers" in overrides and "layer_types" not in overrides:
        fields["layer_types"] = [FULL if (i + 1) % 2 == 0 else LIN for i in range(fields["num_hidden_layers"])]
    if fields.get("intermediate_size") is None:
        fields.pop("intermediate_size", None)
    return cfg_cls(**fields)


def make_tiny_checkpoint(kind: str, out_dir: str | Path, *, seed: int = 0, layout: str = "causal_lm",
                         fused_experts: bool = False, max_shard_size: str | None = None,
                         dtype: torch.dtype = torch.float32, **overrides) -> Path:
    """Writes a tiny random checkpoint to out_dir (atomically) and returns out_dir.

    kind: 'dense' or 'moe'. layout: 'causal_lm' (exactly what Qwen3_5(Moe)ForCausalLM.save_pretrained writes)
    or 'multimodal' (a ForConditionalGeneration-style checkpoint: `model.language_model.` prefix, nested
    text_config, extra `model.visual.*` and `mtp.*` tensors). fused_experts (MoE): store
    `experts.gate_up_proj` / `experts.down_proj` [E, ...] instead of transformers' per-expert tensors.
    Same (kind, seed, overrides) give the same text weights whatever the layout.
    """
    out_dir = Path(out_dir)
    _, lm_cls = hf_classes(kind)
    cfg = tiny_config(kind, **overrides)
    torch.manual_seed(seed)
    model = lm_cls(cfg).eval()
    _randomise(model, seed)
    model.to(dtype)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent if out_dir.parent.exists() else None))
    try:
        kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
        model.save_pretrained(tmp, **kwargs)
        if layout != "causal_lm" or fused_experts:
            _rewrite(tmp, kind, cfg, layout, fused_experts, seed)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def _read_all(d: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for f in sorted(d.glob("*.safetensors")):
        tensors.update(load_file(f))
        f.unlink()
    (d / "model.safetensors.index.json").unlink(missing_ok=True)
    return tensors


def _fuse_experts(tensors: dict[str, torch.Tensor], num_experts: int) -> dict[str, torch.Tensor]:
    out = {k: v for k, v in tensors.items() if ".mlp.experts." not in k}
    prefixes = sorted({k.split(".mlp.experts.")[0] for k in tensors if ".mlp.experts." in k})
    for pre in prefixes:
        def e(i: int, w: str, pre: str = pre) -> torch.Tensor:
            return tensors[f"{pre}.mlp.experts.{i}.{w}.weight"]

        out[f"{pre}.mlp.experts.gate_up_proj"] = torch.stack(
            [torch.cat([e(i, "gate_proj"), e(i, "up_proj")]) for i in range(num_experts)])
        out[f"{pre}.mlp.experts.down_proj"] = torch.stack([e(i, "down_proj") for i in range(num_experts)])
    return out


def _rewrite(d: Path, kind: str, cfg, layout: str, fused: bool, seed: int) -> None:
    """Turns a save_pretrained directory into the multimodal and/or fused-expert layout (2 shards + index)."""
    from safetensors.torch import save_file

    tensors = _read_all(d)
    if fused:
        tensors = _fuse_experts(tensors, cfg.num_experts)
    config = json.loads((d / "config.json").read_text())
    if layout == "multimodal":
        tensors = {("model.language_model." + k[len("model."):] if k.startswith("model.") else k): v
                   for k, v in tensors.items()}
        gen = torch.Generator().manual_seed(seed + 1)
        dt = next(iter(tensors.values())).dtype
        tensors["model.visual.patch_embed.proj.weight"] = torch.randn(16, 3, 2, 4, 4, generator=gen).to(dt)
        tensors["model.visual.blocks.0.norm1.weight"] = torch.ones(16, dtype=dt)
        tensors["mtp.fc.weight"] = torch.randn(cfg.hidden_size, 2 * cfg.hidden_size, generator=gen).to(dt)
        tensors["mtp.norm.weight"] = torch.zeros(cfg.hidden_size, dtype=dt)
        text = {k: v for k, v in config.items() if k not in ("architectures", "transformers_version")}
        wrapper = "qwen3_5" if kind == "dense" else "qwen3_5_moe"
        config = {"architectures": [("Qwen3_5" if kind == "dense" else "Qwen3_5Moe") + "ForConditionalGeneration"],
                  "model_type": wrapper, "text_config": text, "tie_word_embeddings": cfg.tie_word_embeddings,
                  "vision_config": dict(TINY_VISION, model_type=f"{wrapper}_vision")}
        (d / "config.json").write_text(json.dumps(config, indent=2))
    names = sorted(tensors)
    shards = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for i, part in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({n: tensors[n].contiguous() for n in part}, d / fname, metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in tensors.values())},
             "weight_map": weight_map}
    (d / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def load_hf_model(kind: str, path: str | Path, dtype: torch.dtype = torch.float32):
    """transformers' ForCausalLM for a causal_lm-layout tiny checkpoint (eager attention: the reference math)."""
    _, lm_cls = hf_classes(kind)
    return lm_cls.from_pretrained(path, dtype=dtype, attn_implementation="eager").eval()


def hf_forward(model, input_ids: torch.Tensor, cache):
    """transformers' forward with a cache it updates in place. The keyword was renamed `past_key_values` ->
    `cache` in transformers 5.24 (the old name goes in 5.40); pass whichever this version's forward takes."""
    import inspect

    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return model(input_ids=input_ids, use_cache=True, **{name: cache})


# Named variants shared by every test suite (tests/conftest.py `tiny_checkpoint(name)`):
# (kind, make_tiny_checkpoint keyword arguments).
TINY_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "dense": ("dense", {}),
    "dense_tied": ("dense", {"tie_word_embeddings": True, "num_attention_heads": 5, "num_key_value_heads": 5,
                                 "linear_num_key_heads": 3, "linear_num_value_heads": 3, "num_hidden_layers": 4,
                                 "layer_types": [FULL, LIN, LIN, FULL], "max_shard_size": "40KB", "seed": 1}),
    "moe": ("moe", {}),
    "moe_tied": ("moe", {"tie_word_embeddings": True, "num_experts": 5, "num_experts_per_tok": 3, "num_attention_heads": 4,
                             "num_key_value_heads": 2, "linear_num_key_heads": 2, "linear_num_value_heads": 2, "seed": 2}),
    # same weights as "dense" / "moe", other on-disk layouts
    "dense_multimodal": ("dense", {"layout": "multimodal"}),
    "moe_multimodal_fused": ("moe", {"layout": "multimodal", "fused_experts": True}),
}


def make_tiny_variant(name: str, out_dir: str | Path) -> Path:
    kind, kwargs = TINY_VARIANTS[name]
    return make_tiny_checkpoint(kind, out_dir, **kwargs)
