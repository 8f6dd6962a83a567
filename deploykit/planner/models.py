"""Qwen3.5 model specs: the shipped catalog (profiles/models/*.yaml) and any local HF config.json.

A spec holds only what config.json says. Everything the planner needs (parameters per component, bytes per
precision, KV and recurrent-state sizes) is derived in `deploykit.planner.anatomy`, never stored.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from deploykit.errors import DeployKitError
from deploykit.resources import profiles_dir

ARCHITECTURES = ("qwen3_5", "qwen3_5_moe")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class TextConfig(BaseModel):
    """HF `text_config` fields the planner reads (names as in config.json; other fields are kept)."""

    model_config = ConfigDict(extra="allow")

    vocab_size: PositiveInt
    hidden_size: PositiveInt
    num_hidden_layers: PositiveInt
    num_attention_heads: PositiveInt
    num_key_value_heads: PositiveInt
    head_dim: PositiveInt
    linear_num_key_heads: PositiveInt
    linear_num_value_heads: PositiveInt
    linear_key_head_dim: PositiveInt
    linear_value_head_dim: PositiveInt
    # transformers 5.23 Qwen3_5TextConfig defaults (S5) where a config omits a field.
    linear_conv_kernel_dim: int = 4
    full_attention_interval: int = 4
    layer_types: list[str] | None = None
    intermediate_size: int | None = None
    num_experts: int | None = None
    num_experts_per_tok: int | None = None
    moe_intermediate_size: int | None = None
    shared_expert_intermediate_size: int | None = None
    mtp_num_hidden_layers: int = 0
    max_position_embeddings: int = 262144
    tie_word_embeddings: bool = False
    mamba_ssm_dtype: str = "float32"

    @model_validator(mode="after")
    def _layer_types_match_layers(self) -> TextConfig:
        kinds = {"full_attention", "linear_attention"}
        if self.layer_types is not None:
            if len(self.layer_types) != self.num_hidden_layers:
                raise ValueError(f"layer_types has {len(self.layer_types)} entries for num_hidden_layers "
                                 f"{self.num_hidden_layers}")
            if not set(self.layer_types) <= kinds:
                raise ValueError(f"layer_types may hold only {sorted(kinds)}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                             f"num_key_value_heads {self.num_key_value_heads}")
        if self.linear_num_value_heads % self.linear_num_key_heads:
            raise ValueError(f"linear_num_value_heads {self.linear_num_value_heads} is not a multiple of "
                             f"linear_num_key_heads {self.linear_num_key_heads}")
        return self

    def resolved_layer_types(self) -> list[str]:
        """layer_types, or the pattern transformers derives from full_attention_interval."""
        if self.layer_types:
            return list(self.layer_types)
        k = self.full_attention_interval
        return ["full_attention" if (i + 1) % k == 0 else "linear_attention" for i in range(self.num_hidden_layers)]


class VisionConfig(BaseModel):
    """HF `vision_config` fields (Qwen3.5 ViT)."""

    model_config = ConfigDict(extra="allow")

    depth: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    out_hidden_size: int
    in_channels: int = 3
    patch_size: int = 16
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    num_position_embeddings: int = 2304


class ModelSpec(BaseModel):
    """One checkpoint: a catalog entry or a user's config.json."""

    name: str
    hf_repo: str | None = None
    aliases: list[str] = Field(default_factory=list)
    model_type: str
    tie_word_embeddings: bool
    text: TextConfig
    vision: VisionConfig | None = None
    published_total_params: int | None = None
    source: str = ""

    @property
    def is_moe(self) -> bool:
        return bool(self.text.num_experts)

    def all_names(self) -> list[str]:
        names = [self.name, *self.aliases]
        if self.hf_repo:
            names.append(self.hf_repo)
        return names


def spec_from_hf_config(cfg: dict, *, name: str, source: str, aliases=(), hf_repo=None, published=None) -> ModelSpec:
    """Build a ModelSpec from a parsed config.json (VLM wrapper with text_config, or a text-only config)."""
    model_type = str(cfg.get("model_type", ""))
    base_type = model_type.removesuffix("_text")
    if base_type not in ARCHITECTURES:
        raise DeployKitError(
            f"{source}: model_type '{model_type or '?'}' is not a Qwen3.5 architecture",
            f"deploykit plans {' / '.join(ARCHITECTURES)} checkpoints",
        )
    text_cfg = cfg.get("text_config", cfg)
    vision_cfg = cfg.get("vision_config")
    if not isinstance(text_cfg, dict) or not isinstance(vision_cfg, (dict, type(None))):
        raise DeployKitError(f"{source}: text_config / vision_config must be JSON objects", "check the config.json")
    tie = cfg.get("tie_word_embeddings", text_cfg.get("tie_word_embeddings", False))
    try:
        text = TextConfig.model_validate(text_cfg)
        vision = VisionConfig.model_validate(vision_cfg) if vision_cfg else None
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "text_config"
        msg = err["msg"].removeprefix("Value error, ")
        raise DeployKitError(f"{source}: config field '{field}': {msg}", "check the config.json") from None
    if text.num_experts and not (text.num_experts_per_tok and text.moe_intermediate_size):
        raise DeployKitError(f"{source}: MoE config lacks num_experts_per_tok or moe_intermediate_size")
    if not text.num_experts and not text.intermediate_size:
        raise DeployKitError(f"{source}: dense config lacks intermediate_size")
    return ModelSpec(
        name=name, hf_repo=hf_repo, aliases=list(aliases), model_type=base_type, tie_word_embeddings=bool(tie),
        text=text, vision=vision, published_total_params=published, source=source,
    )


def _load_catalog_file(path: Path) -> ModelSpec:
    doc = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    return spec_from_hf_config(
        doc["config"], name=doc["name"], source=str(path), aliases=doc.get("aliases", ()),
        hf_repo=doc.get("hf_repo"), published=doc.get("published_total_params"),
    )


@lru_cache(maxsize=1)
def catalog() -> tuple[ModelSpec, ...]:
    """The shipped checkpoints, smallest first."""
    specs = [_load_catalog_file(p) for p in sorted((profiles_dir() / "models").glob("*.yaml")) if not p.name.startswith("_")]
    from deploykit.planner.anatomy import anatomy

    return tuple(sorted(specs, key=lambda s: anatomy(s).params_total))


def _norm(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def _load_local(path: Path) -> ModelSpec:
    from deploykit.model.config import read_config_json

    cfg_path = path / "config.json" if path.is_dir() else path
    cfg = read_config_json(path)
    name = cfg.get("_name_or_path") or (path.name if path.is_dir() else path.parent.name) or cfg_path.stem
    return spec_from_hf_config(cfg, name=str(name), source=str(cfg_path))


def resolve_model(name: str) -> ModelSpec:
    """A catalog name/alias/HF repo id (case-insensitive), or a local config.json / checkpoint directory."""
    key = _norm(name)
    table = {_norm(n): spec for spec in catalog() for n in spec.all_names()}
    if key in table:
        return table[key]
    path = Path(name).expanduser()
    if path.exists():
        return _load_local(path)
    close = difflib.get_close_matches(key, table.keys(), n=3, cutoff=0.5)
    known = ", ".join(s.aliases[0] if s.aliases else s.name for s in catalog())
    hint = f"did you mean {', '.join(close)}?" if close else f"known models: {known}; or a path to a config.json"
    raise DeployKitError(f"unknown model '{name}'", hint)
