"""Where an export's config and weights come from: a checkpoint directory, a catalog alias (+ --weights DIR
or the Hugging Face cache), or random weights; and how each graph initializer is read from there.

Checkpoint tensors are read lazily, one row block at a time, with the safetensors file opened per block
(its mmap is dropped right after), so reading a 60 GB checkpoint keeps memory flat. Names: deploykit's
parameters are transformers' names without the leading `model.` (`lm_head.weight` stays as is); multimodal
checkpoints add `model.language_model.`; MoE experts are either fused ([E,2I,H] gate_up_proj, [E,H,I]
down_proj) or per expert (`experts.{e}.gate_proj|up_proj|down_proj.weight`), which are fused on the fly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from deploykit.errors import DeployKitError
from deploykit.export.weights import TensorReader
from deploykit.resources import profiles_dir

PREFIXES = ("model.", "model.language_model.", "")


@dataclass
class ModelSource:
    label: str  # what the user gave
    config: dict  # Hugging Face config.json content
    checkpoint_dir: Path | None  # None for --random-weights
    files: list[Path] = field(default_factory=list)


def _catalog_entry(alias: str) -> dict | None:
    key = alias.lower()
    for path in sorted((profiles_dir() / "models").glob("*.yaml")):
        entry = yaml.safe_load(path.read_text())
        names = {
            str(entry.get("name", "")).lower(),
            path.stem.lower(),
            *(a.lower() for a in entry.get("aliases", [])),
        }
        if key in names:
            return entry
    return None


def _hf_cache_snapshot(repo: str) -> Path | None:
    """The newest snapshot of `repo` in the Hugging Face cache that holds safetensors files, if any."""
    home = Path(
        os.environ.get("HF_HUB_CACHE")
        or Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface")) / "hub"
    )
    snaps = home / f"models--{repo.replace('/', '--')}" / "snapshots"
    candidates = [d for d in snaps.glob("*") if (d / "config.json").exists() and any(d.glob("*.safetensors"))]
    return max(candidates, key=lambda d: d.stat().st_mtime) if candidates else None


def resolve_source(model: str | Path, weights: str | Path | None, random_weights: bool) -> ModelSource:
    """Config and checkpoint for MODEL; DeployKitError naming the fix when weights are missing."""
    from deploykit.model.config import read_config_json

    path = Path(model)
    if path.is_dir():
        config = read_config_json(path)
        ckpt = None if random_weights else path
    else:
        entry = _catalog_entry(str(model))
        if entry is None:
            raise DeployKitError(
                f"'{model}' is neither a checkpoint directory nor a catalog model",
                "give a directory with config.json or an alias like qwen3.5-2b",
            )
        config = entry["config"]
        ckpt = None
        if not random_weights:
            ckpt = Path(weights) if weights else _hf_cache_snapshot(entry.get("hf_repo", ""))
            if ckpt is None or not ckpt.is_dir():
                raise DeployKitError(
                    f"no weights found for {entry['name']} ({entry.get('hf_repo')})",
                    "pass --weights DIR, download it to the HF cache, or use --random-weights",
                )
            if (ckpt / "config.json").is_file():  # the checkpoint's own config (a fine-tune's rope, eps, tying)
                config = read_config_json(ckpt)
    if weights and path.is_dir() and not random_weights:
        ckpt = Path(weights)
    files = sorted(ckpt.glob("*.safetensors")) if ckpt else []
    if ckpt and not files:
        raise DeployKitError(
            f"{ckpt} holds no *.safetensors files", "point --weights at a safetensors checkpoint"
        )
    return ModelSource(label=str(model), config=config, checkpoint_dir=ckpt, files=files)


class CheckpointReaders:
    """param name -> TensorReader over the checkpoint, without loading tensors."""

    def __init__(self, files: list[Path], tied: bool):
        from deploykit.model.loader import read_header, refuse_quantized, text_name

        self.tied = tied
        self.where: dict[str, Path] = {}
        for f in files:
            for entry in read_header(f):  # bounds-checked header: a corrupt shard is a one-line error
                if text_name(entry.name) is not None:  # vision / MTP tensors are not exported
                    refuse_quantized(entry)
                self.where[entry.name] = f

    def _slice_reader(self, key: str) -> TensorReader:
        from safetensors import safe_open

        file = self.where[key]
        with safe_open(file, framework="pt") as h:
            shape = tuple(h.get_slice(key).get_shape())

        def read(a: int, b: int) -> torch.Tensor:
            with safe_open(file, framework="pt") as h:
                return h.get_slice(key)[a:b].clone() if shape else h.get_tensor(key)

        return TensorReader(shape, read)

    def _key(self, name: str) -> str | None:
        for prefix in PREFIXES:
            if prefix + name in self.where:
                return prefix + name
        return None

    def _per_expert(self, name: str) -> TensorReader | None:
        """[E,2I,H] / [E,H,I] assembled from per-expert tensors, a block of experts at a time."""
        base, kind = name.rsplit(".", 1)  # "...mlp.experts", "gate_up_proj" | "down_proj"
        parts = ("gate_proj", "up_proj") if kind == "gate_up_proj" else ("down_proj",)
        first = [self._key(f"{base}.0.{p}.weight") for p in parts]
        if None in first:
            return None
        n = 0
        while self._key(f"{base}.{n}.{parts[0]}.weight"):
            n += 1
        readers = [[self._slice_reader(self._key(f"{base}.{e}.{p}.weight")) for p in parts] for e in range(n)]
        rows = sum(r.shape[0] for r in readers[0])
        shape = (n, rows, *readers[0][0].shape[1:])

        def read(a: int, b: int) -> torch.Tensor:
            return torch.stack([torch.cat([r.read(0, r.shape[0]) for r in readers[e]]) for e in range(a, b)])

        return TensorReader(shape, read)

    def reader(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> TensorReader:
        r = self._find(name)
        if tuple(r.shape) != tuple(shape):
            raise DeployKitError(
                f"checkpoint tensor for '{name}' has shape {list(r.shape)}, the model expects {list(shape)}",
                "check that the checkpoint matches its config.json",
            )
        return r

    def _find(self, name: str) -> TensorReader:
        key = self._key(name)
        if key is None and name == "lm_head.weight" and self.tied:
            key = self._key("embed_tokens.weight")
        if key is not None:
            return self._slice_reader(key)
        if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            r = self._per_expert(name)
            if r is not None:
                return r
        raise DeployKitError(
            f"the checkpoint has no tensor for parameter '{name}'",
            "check that the checkpoint matches its config.json",
        )


class RandomReaders:
    """param name -> TensorReader over deploykit's deterministic random weights (a function of seed and name).

    `random_tensor` draws a whole tensor at once (its blocks follow one generator stream), so the largest
    tensor is held once, in the export dtype, while it is written; nothing else is kept."""

    def __init__(self, seed: int, tied: bool):
        from deploykit.model.loader import random_tensor

        self.seed, self.tied, self.gen = seed, tied, random_tensor

    def reader(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> TensorReader:
        if name == "lm_head.weight" and self.tied:  # random_model draws the shared tensor under this name
            name = "embed_tokens.weight"
        held: dict[str, torch.Tensor] = {}

        def read(a: int, b: int) -> torch.Tensor:
            if "t" not in held:
                held["t"] = self.gen(name, shape, dtype, self.seed)
            t = held["t"]
            if not shape or b >= shape[0]:
                held.clear()  # last block handed out: drop the tensor
            return t[a:b] if shape else t

        return TensorReader(tuple(shape), read)
