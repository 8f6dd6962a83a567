"""`export_onnx`: deploykit's model -> OUT/model.onnx (+ model.onnx.data, deploykit.json), streaming weights.

    from deploykit.export import export_onnx
    result = export_onnx("path/to/checkpoint", "out/", dtype="float16")          # or a catalog alias
    result = export_onnx("qwen3.5-2b", "out/", random_weights=True, seed=0, layers=4)
    result.model_path, result.manifest.inputs, result.not_ready

Flow: trace on the meta device -> optimise with weights hidden -> write every initializer as external data
straight from its source -> attach the deploykit function bodies (or inline them: decompose) -> check ->
manifest. Everything goes to a hidden temporary directory next to OUT that is renamed into place last, so an
interrupted export leaves no deploykit.json behind.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from deploykit.errors import DeployKitError
from deploykit.export.manifest import MANIFEST_NAME, Manifest
from deploykit.export.weights import DATA_FILE

MODEL_FILE = "model.onnx"
EXPORT_FILES = (MODEL_FILE, DATA_FILE, MANIFEST_NAME)
DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


@dataclass
class ExportResult:
    out_dir: Path
    model_path: Path
    manifest: Manifest
    tensors_written: int
    bytes_written: int
    seconds: float

    @property
    def not_ready(self) -> list[str]:
        return self.manifest.readiness.not_ready


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise DeployKitError(f"unknown dtype '{dtype}'", "use fp32, fp16 or bf16")
    return DTYPES[dtype]


def _build_meta_model(config: dict, dtype: torch.dtype, layers: int | None):
    from deploykit.model.config import parse_config
    from deploykit.model.model import Qwen35

    cfg = parse_config(config)
    if layers is not None:
        if not 1 <= layers <= cfg.num_hidden_layers:
            raise DeployKitError(f"--layers {layers} is out of range", f"use 1..{cfg.num_hidden_layers}")
        cfg = cfg.model_copy(update={"num_hidden_layers": layers, "layer_types": cfg.layer_types[:layers]})
    return Qwen35(cfg, dtype=dtype, device="meta"), cfg


def _prepare_out(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise DeployKitError(f"{out_dir} is a file", "give a directory for the export")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).exists():
        raise DeployKitError(
            f"{out_dir} exists, is not empty and is not a deploykit export",
            "choose an empty or new output directory",
        )
    if out_dir.exists():  # an earlier export is replaced whole: refuse when that would delete other files
        others = sorted(p.name for p in out_dir.iterdir() if p.name not in EXPORT_FILES)
        if others:
            raise DeployKitError(
                f"{out_dir} holds files that are not part of the export ({', '.join(others[:3])}"
                f"{', ...' if len(others) > 3 else ''}), which replacing the export would delete",
                "move them (engines built from the old export no longer match it) or export to another directory",
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def _commit(tmp: Path, out_dir: Path) -> None:
    """Moves the finished export into place, its manifest last; an older export at out_dir goes only then.

    A new out_dir is the temp folder renamed. An existing one (perhaps the current folder: `-o .`) keeps its
    inode: the old export's files move aside first, so an interruption leaves no deploykit.json there."""
    if not out_dir.exists():
        tmp.rename(out_dir)
        return
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    old.mkdir()
    for name in EXPORT_FILES:
        if (out_dir / name).exists():
            (out_dir / name).rename(old / name)
    for name in sorted(os.listdir(tmp), key=lambda n: n == MANIFEST_NAME):
        (tmp / name).rename(out_dir / name)
    tmp.rmdir()
    shutil.rmtree(old, ignore_errors=True)


def export_onnx(
    model_or_checkpoint,
    out_dir: str | Path,
    *,
    dtype: str | torch.dtype = "float32",
    layers: int | None = None,
    random_weights: bool = False,
    seed: int = 0,
    decompose: bool = False,
    weights: str | Path | None = None,
    progress: bool = True,
) -> ExportResult:
    """Exports MODEL (checkpoint dir, catalog alias, or an in-memory deploykit Qwen35) to out_dir.

    An in-memory model is traced with its real weights (no streaming; `layers`, `random_weights` and
    `weights` do not apply); its manifest has no checkpoint, so validate it against the model itself."""
    from deploykit.export.graph import build_manifest, finish_graph
    from deploykit.export.source import CheckpointReaders, ModelSource, RandomReaders, resolve_source
    from deploykit.export.trace import optimize_without_weights, trace
    from deploykit.export.write import write_initializers

    start = time.time()
    out_dir = Path(out_dir).resolve()  # "-o ." must name the folder, so that it can be renamed into place
    tdtype = _dtype(dtype)
    if isinstance(model_or_checkpoint, torch.nn.Module):  # an in-memory Qwen35: traced with its own weights
        model, cfg = model_or_checkpoint.eval(), model_or_checkpoint.config
        if next(model.parameters()).dtype != tdtype:
            model = model.to(tdtype)  # in place, like any nn.Module.to
        source = ModelSource(
            label=f"<in-memory {type(model).__name__}>",
            config=cfg.model_dump(mode="json"),
            checkpoint_dir=None,
        )
        readers, random_weights = None, False
    else:
        source = resolve_source(model_or_checkpoint, weights, random_weights)
        model, cfg = _build_meta_model(source.config, tdtype, layers)
        tied = cfg.tie_word_embeddings
        readers = RandomReaders(seed, tied) if random_weights else CheckpointReaders(source.files, tied)
    tmp = _prepare_out(out_dir)
    try:
        ir_model, _, _ = trace(model, tdtype)
        optimize_without_weights(ir_model)
        count, nbytes = write_initializers(ir_model, tmp, readers, progress=progress)
        proto = finish_graph(ir_model, tmp / MODEL_FILE, decompose=decompose)
        manifest = build_manifest(
            proto,
            source=source,
            dtype=tdtype,
            layers=len(cfg.layer_types),
            random_weights=random_weights,
            seed=seed,
            decompose=decompose,
        )
        manifest.write(tmp)
        _commit(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(
        out_dir=out_dir,
        model_path=out_dir / MODEL_FILE,
        manifest=manifest,
        tensors_written=count,
        bytes_written=nbytes,
        seconds=time.time() - start,
    )
