"""Text-model configuration parsed from a Hugging Face config.json (qwen3_5 / qwen3_5_moe).

Accepts the text config at top level (Qwen3_5ForCausalLM, model_type qwen3_5_text / qwen3_5_moe_text) or
nested under `text_config` (the multimodal Qwen3_5(Moe)ForConditionalGeneration checkpoints). Field names
and defaults are transformers 5.23's (configuration_qwen3_5*.py). Torch-free: the planner may use it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from ..errors import DeployKitError

LayerType = Literal["linear_attention", "full_attention"]
TEXT_MODEL_TYPES = {"qwen3_5_text": False, "qwen3_5_moe_text": True}
WRAPPER_MODEL_TYPES = {"qwen3_5": False, "qwen3_5_moe": True}


class TextConfig(BaseModel):
    """The fields of the Qwen3.5 text stack that shape the model. Defaults are transformers' class defaults."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    is_moe: bool = False
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    layer_types: tuple[LayerType, ...]
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int = 256
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0  # transformers' default when rope_parameters gives none
    partial_rotary_factor: float = 0.25  # transformers: kwargs.setdefault("partial_rotary_factor", 0.25)
    linear_conv_kernel_dim: int = 4
    linear_key_head_dim: int = 128
    linear_value_head_dim: int = 128
    linear_num_key_heads: int = 16
    linear_num_value_heads: int = 32
    tie_word_embeddings: bool = False
    intermediate_size: int | None = None  # dense MLP
    num_experts: int | None = None
    num_experts_per_tok: int | None = None
    moe_intermediate_size: int | None = None
    shared_expert_intermediate_size: int | None = None
    norm_topk_prob: bool = True  # transformers' Qwen3_5MoeTopKRouter always renormalises

    @model_validator(mode="after")
    def _consistent(self) -> TextConfig:
        if len(self.layer_types) != self.num_hidden_layers:
            raise ValueError(f"layer_types has {len(self.layer_types)} entries, num_hidden_layers is "
                             f"{self.num_hidden_layers}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.linear_num_value_heads % self.linear_num_key_heads:
            raise ValueError("linear_num_value_heads must be a multiple of linear_num_key_heads")
        needed = ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "shared_expert_intermediate_size") \
            if self.is_moe else ("intermediate_size",)
        missing = [f for f in needed if getattr(self, f) is None]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        return self

    # derived sizes -------------------------------------------------------------------------------
    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def conv_dim(self) -> int:
        """Channels of the GDN short conv: q | k | v."""
        return 2 * self.linear_num_key_heads * self.linear_key_head_dim + self.linear_num_value_heads * \
            self.linear_value_head_dim

    @property
    def full_attention_layers(self) -> list[int]:
        return [i for i, t in enumerate(self.layer_types) if t == "full_attention"]

    @property
    def linear_attention_layers(self) -> list[int]:
        return [i for i, t in enumerate(self.layer_types) if t == "linear_attention"]


def _layer_types(text: dict) -> list[str]:
    if text.get("layer_types"):
        return list(text["layer_types"])
    interval = text.get("full_attention_interval")
    if interval is None:
        raise DeployKitError("config.json gives neither layer_types nor full_attention_interval",
                             "add layer_types from the original checkpoint's config.json")
    # transformers' Qwen3_5TextConfig.__post_init__ rule for an explicit full_attention_interval
    return ["linear_attention" if (i + 1) % interval else "full_attention" for i in range(text["num_hidden_layers"])]


def parse_config(raw: dict) -> TextConfig:
    """TextConfig from a config.json dict; DeployKitError for anything that is not a Qwen3.5 text config."""
    quant = raw.get("quantization_config") or (raw.get("text_config") or {}).get("quantization_config")
    if quant:
        method = quant.get("quant_method", "?") if isinstance(quant, dict) else "?"
        raise DeployKitError(f"config.json declares a quantized checkpoint (quant_method {method!r}): its weights "
                             "are not bf16/fp16/fp32", "use the bf16 checkpoint; quantization happens at build time")
    model_type = raw.get("model_type", "")
    if model_type in WRAPPER_MODEL_TYPES:
        text = dict(raw.get("text_config") or {})
        is_moe = WRAPPER_MODEL_TYPES[model_type]
        if "tie_word_embeddings" in raw:  # the wrapper's flag decides tying for ForConditionalGeneration
            text["tie_word_embeddings"] = raw["tie_word_embeddings"]
    elif model_type in TEXT_MODEL_TYPES:
        text, is_moe = dict(raw), TEXT_MODEL_TYPES[model_type]
    else:
        known = sorted({*WRAPPER_MODEL_TYPES, *TEXT_MODEL_TYPES})
        raise DeployKitError(f"config.json has model_type {model_type!r}, not a Qwen3.5 model",
                             f"expected one of {', '.join(known)}")
    if text.get("attention_bias"):
        raise DeployKitError("config.json sets attention_bias=true, which Qwen3.5 checkpoints never use",
                             "check that this is a Qwen3.5 checkpoint")
    if text.get("hidden_act", "silu") != "silu":
        raise DeployKitError(f"config.json sets hidden_act={text['hidden_act']!r}; Qwen3.5 uses silu")
    if text.get("mlp_only_layers"):
        raise DeployKitError("config.json lists mlp_only_layers, which deploykit's Qwen3.5 model does not support")
    rope = dict(text.get("rope_parameters") or {})
    if rope.get("rope_type", "default") != "default":
        raise DeployKitError(f"rope_type {rope['rope_type']!r} is not supported", "Qwen3.5 uses the default RoPE")
    fields = {**text, "is_moe": is_moe, "layer_types": _layer_types(text)}
    fields.pop("norm_topk_prob", None)  # transformers' Qwen3_5MoeTopKRouter renormalises whatever the config says
    for key in ("rope_theta", "partial_rotary_factor"):
        if key in rope:
            fields[key] = rope[key]
    if fields.get("head_dim") is None:
        fields["head_dim"] = text["hidden_size"] // text["num_attention_heads"]
    try:
        return TextConfig(**fields)
    except ValueError as exc:
        first = str(exc).splitlines()
        raise DeployKitError(f"config.json is not a valid Qwen3.5 text config: {' '.join(first[:3])}") from None


def read_config_json(path: str | Path) -> dict:
    """The raw config.json (a dict) of a checkpoint directory or the file itself; one-line errors. Torch-free:
    the planner reads local configs through it too."""
    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise DeployKitError(f"no config.json at {file}", "pass a Hugging Face checkpoint directory")
    try:
        raw = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" ({exc.msg} at line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise DeployKitError(f"{file} is not valid JSON{where}", "re-download config.json") from None
    if not isinstance(raw, dict):
        raise DeployKitError(f"{file} is not a JSON object", "pass a Hugging Face checkpoint's config.json")
    return raw


def load_config(path: str | Path) -> TextConfig:
    """TextConfig from a checkpoint directory or a config.json path."""
    return parse_config(read_config_json(path))
