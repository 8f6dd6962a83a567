"""PyTorch references for `deploykit validate`: one `step(input_ids) -> (logits, states)` interface.

`HFReference` runs transformers' Qwen3_5ForCausalLM / Qwen3_5MoeForCausalLM (eager attention, fp32) with its
own DynamicCache and converts that cache to deploykit's state layout for the final-state comparison:
full attention -> key, value [B,Hkv,P,D]; Gated DeltaNet -> conv [B,C,K-1] (transformers keeps K columns;
the last K-1 are the state) and recurrent [B,Hv,Dk,Dv]. `DeploykitReference` runs deploykit's own model
with explicit state (the graph the exporter traced), for `--reference deploykit`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deploykit.errors import DeployKitError


def _text_config_dict(checkpoint: Path, layers: int | None) -> tuple[dict, bool]:
    from deploykit.model.config import read_config_json

    raw = read_config_json(checkpoint)
    text = dict(raw.get("text_config") or raw)
    is_moe = raw.get("model_type", "") in ("qwen3_5_moe", "qwen3_5_moe_text")
    if "text_config" in raw and "tie_word_embeddings" in raw:
        text["tie_word_embeddings"] = raw["tie_word_embeddings"]
    if layers is not None and layers < text["num_hidden_layers"]:
        text["num_hidden_layers"] = layers
        if text.get("layer_types"):
            text["layer_types"] = text["layer_types"][:layers]
    for key in ("architectures", "transformers_version", "model_type"):
        text.pop(key, None)
    return text, is_moe


def _hf_state_dict(checkpoint: Path, model: torch.nn.Module, is_moe: bool) -> dict[str, torch.Tensor]:
    """Checkpoint tensors under the names of `model` (multimodal prefix stripped, fused experts split)."""
    from safetensors import safe_open

    wanted = set(model.state_dict())
    out: dict[str, torch.Tensor] = {}
    for file in sorted(checkpoint.glob("*.safetensors")):
        with safe_open(file, framework="pt") as f:
            for key in f.keys():  # noqa: SIM118  (safe_open is not a mapping)
                name = key.replace("model.language_model.", "model.", 1)
                if name in wanted:
                    out[name] = f.get_tensor(key)
                elif is_moe and name.endswith((".mlp.experts.gate_up_proj", ".mlp.experts.down_proj")):
                    _split_fused(name, f.get_tensor(key), wanted, out)
                elif is_moe and ".mlp.experts." in name:
                    out[name] = f.get_tensor(key)  # per-expert tensor; fused below if the model wants [E,...]
    for name in wanted - set(out):
        if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            _fuse(name, out)
    return out


def _fuse(name: str, out: dict) -> None:
    """transformers 5.23 keeps fused [E,2I,H] / [E,H,I] experts; save_pretrained writes them per expert."""
    base, kind = name.rsplit(".", 1)
    parts = ("gate_proj", "up_proj") if kind == "gate_up_proj" else ("down_proj",)
    experts = []
    while f"{base}.{len(experts)}.{parts[0]}.weight" in out:
        e = len(experts)
        experts.append(torch.cat([out.pop(f"{base}.{e}.{p}.weight") for p in parts]))
    if experts:
        out[name] = torch.stack(experts)


def _split_fused(name: str, t: torch.Tensor, wanted: set[str], out: dict) -> None:
    """[E,2I,H] / [E,H,I] fused experts -> whatever layout this transformers model expects."""
    if name in wanted:
        out[name] = t
        return
    prefix = name.rsplit(".", 1)[0]
    for e in range(t.shape[0]):
        if name.endswith("gate_up_proj"):
            gate, up = t[e].chunk(2, dim=0)
            out[f"{prefix}.{e}.gate_proj.weight"], out[f"{prefix}.{e}.up_proj.weight"] = gate, up
        else:
            out[f"{prefix}.{e}.down_proj.weight"] = t[e]


def load_hf_model(checkpoint: Path, layers: int | None = None) -> torch.nn.Module:
    """transformers' ForCausalLM in fp32 with eager attention, weights from the checkpoint (layers cut)."""
    import transformers as tf

    text, is_moe = _text_config_dict(checkpoint, layers)
    cfg_cls, lm_cls = (
        (tf.Qwen3_5MoeTextConfig, tf.Qwen3_5MoeForCausalLM)
        if is_moe
        else (tf.Qwen3_5TextConfig, tf.Qwen3_5ForCausalLM)
    )
    cfg = cfg_cls(**text)
    cfg._attn_implementation = "eager"
    model = lm_cls(cfg).eval()
    sd = _hf_state_dict(checkpoint, model, is_moe)
    missing = set(model.state_dict()) - set(sd)
    if cfg.tie_word_embeddings:
        missing.discard("lm_head.weight")
    if missing:
        raise ValueError(f"checkpoint {checkpoint} lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}")
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    return model.float()


class HFReference:
    """transformers with its DynamicCache; the prefix of tokens seen so far lives in the cache."""

    name = "hf"

    def __init__(self, checkpoint: Path, layers: int | None = None):
        self.model = load_hf_model(Path(checkpoint), layers)
        self.cache = None

    def reset(self) -> None:
        self.cache = None

    @torch.no_grad()
    def step(self, input_ids: np.ndarray) -> np.ndarray:
        from transformers import DynamicCache

        from deploykit.model.testing import hf_forward

        if self.cache is None:
            self.cache = DynamicCache(config=self.model.config)
        return hf_forward(self.model, torch.from_numpy(input_ids), self.cache).logits.float().numpy()

    def states(self) -> list[np.ndarray]:
        """The cache in deploykit's flat layer-order layout."""
        states = []
        for layer in self.cache.layers:
            if getattr(layer, "keys", None) is not None:
                states += [layer.keys.float().numpy(), layer.values.float().numpy()]
            else:
                conv = layer.conv_states[0]
                k = self.model.config.linear_conv_kernel_dim
                states += [
                    conv[..., conv.shape[-1] - (k - 1) :].float().numpy(),
                    layer.recurrent_states[0].float().numpy(),
                ]
        return states


class DeploykitReference:
    """deploykit's reference model with explicit state, fp32 (the model the exporter traces)."""

    name = "deploykit"

    def __init__(
        self,
        checkpoint: Path | None,
        config: dict | None = None,
        layers: int | None = None,
        seed: int | None = None,
    ):
        from deploykit.model.config import parse_config
        from deploykit.model.loader import load_model, random_model

        if checkpoint is not None and layers is None:
            self.model = load_model(checkpoint, dtype=torch.float32)
        else:  # random weights (a pure function of seed and name) or a layer-cut export
            cfg = parse_config(config)
            if layers is not None:
                cfg = cfg.model_copy(
                    update={"num_hidden_layers": layers, "layer_types": cfg.layer_types[:layers]}
                )
            if checkpoint is not None:
                raise DeployKitError("--reference deploykit cannot cut a checkpoint to the export's --layers",
                                     "use --reference hf for a --layers export of a checkpoint")
            self.model = random_model(cfg, dtype=torch.float32, seed=seed or 0)
        self.model.eval()
        self.state = None
        self.past = 0

    def reset(self) -> None:
        self.state, self.past = None, 0

    @torch.no_grad()
    def step(self, input_ids: np.ndarray) -> np.ndarray:
        ids = torch.from_numpy(input_ids)
        b, t = ids.shape
        if self.state is None:
            self.state = self.model.empty_state(b, torch.float32, torch.device("cpu"))
        pos = (self.past + torch.arange(t)).expand(b, t).contiguous()
        mask = torch.ones(b, self.past + t, dtype=torch.int64)
        logits, self.state = self.model(ids, pos, mask, self.state)
        self.past += t
        return logits.float().numpy()

    def states(self) -> list[np.ndarray]:
        return [s.float().numpy() for s in self.state]
