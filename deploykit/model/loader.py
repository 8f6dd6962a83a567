"""Streaming loader for Hugging Face safetensors checkpoints, and deterministic random weights.

The model is built on the meta device, every tensor header is checked against it (shape, dtype kind,
bounds), and only then is memory allocated and each tensor copied straight from a memory map of its
shard into its parameter (converting dtype and moving to the device in the same copy). Pages of the map
are released after each tensor, so peak RSS stays near the model's own size. Pickle checkpoints
(.bin/.pt/.pth) are never opened. Every user-fixable problem is a one-line DeployKitError naming the file
and tensor.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import mmap
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import DeployKitError
from .config import TextConfig, load_config
from .model import Qwen35

log = logging.getLogger(__name__)

# safetensors dtype codes (safetensors format spec, "dtype" field)
ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
             "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64,
             "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
UNQUANTIZED = ("F64", "F32", "F16", "BF16")
# scale / zero-point tensors of FP8 (Qwen's *_scale_inv), AWQ / GPTQ / compressed-tensors checkpoints
QUANT_SUFFIXES = ("_scale_inv", ".weight_scale", ".input_scale", ".qweight", ".qzeros", ".scales", ".g_idx",
                  ".weight_packed", ".weight_zero_point")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_HEADER = 100 * 2**20  # safetensors itself refuses headers over 100 MB (safetensors/src/tensor.rs)
SKIPPED = {"model.visual.": "vision tower", "visual.": "vision tower", "mtp.": "MTP head", "model.mtp.": "MTP head"}
TEXT_PREFIXES = ("model.language_model.", "model.")  # multimodal checkpoints, then ForCausalLM ones
EXPERT = re.compile(r"^layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")
IGNORED = re.compile(r"rotary_emb\.inv_freq$")  # a buffer some exporters save; recomputed from config


@dataclass(frozen=True)
class Entry:
    """One tensor of a shard: its name in the file, dtype code, shape and absolute byte range."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass
class LoadReport:
    files: list[Path] = field(default_factory=list)
    loaded: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # category -> count


def _corrupt(file: Path, what: str) -> DeployKitError:
    return DeployKitError(f"corrupt safetensors shard {file.name}: {what}", "re-download this shard")


def read_header(file: Path) -> list[Entry]:
    """Parses and bounds-checks a shard's header without reading any tensor data."""
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise _corrupt(file, f"{size} bytes, too short for a header")
        n = int.from_bytes(head, "little")
        if n > min(size - 8, MAX_HEADER):
            raise _corrupt(file, f"header length {n} exceeds the file size {size}")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _corrupt(file, "header is not valid JSON") from None
    if not isinstance(header, dict):
        raise _corrupt(file, "header is not a JSON object")
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (b, e) = info["dtype"], tuple(int(s) for s in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise _corrupt(file, f"tensor {name} has a malformed header entry") from None
        if dtype not in ST_DTYPES:
            raise _corrupt(file, f"tensor {name} has unknown dtype {dtype!r}")
        nbytes = math.prod(shape) * ST_DTYPES[dtype].itemsize
        if e - b != nbytes or b < 0:
            raise _corrupt(file, f"tensor {name} spans {e - b} bytes, its shape {list(shape)} needs {nbytes}")
        if 8 + n + e > size:
            raise _corrupt(file, f"tensor {name} ends at byte {8 + n + e}, past the end of the file ({size} bytes)")
        entries.append(Entry(name, file, dtype, shape, 8 + n + b, 8 + n + e))
    return entries


def refuse_quantized(entry: Entry) -> None:
    """Quantized weights (FP8 e4m3 with block scales, INT4 packs, ...) would be read as plain numbers: refuse."""
    if entry.dtype not in UNQUANTIZED or entry.name.endswith(QUANT_SUFFIXES):
        raise DeployKitError(f"tensor {entry.name} in {entry.file.name} ({entry.dtype}) belongs to a quantized "
                             "checkpoint; deploykit reads bf16 / fp16 / fp32 weights",
                             "use the bf16 checkpoint; quantization happens at build time")


def checkpoint_files(path: Path) -> list[Path]:
    """The safetensors shards of a checkpoint directory (from the index when there is one)."""
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES:
            raise DeployKitError(f"refusing to load {path.name}: pickle checkpoints can run code when loaded",
                                 "convert it to safetensors")
        return [path]
    if not path.is_dir():
        raise DeployKitError(f"checkpoint {path} does not exist")
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError):
            raise DeployKitError(f"{index} is not a valid safetensors index (no weight_map)") from None
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise DeployKitError(f"shard {missing[0]} named in {index.name} is missing from {path}")
        return [path / n for n in names]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise DeployKitError(f"refusing to load {pickles[0]}: pickle checkpoints can run code when loaded; "
                                 "deploykit reads safetensors only", "convert the checkpoint to safetensors")
        raise DeployKitError(f"no .safetensors files in {path}")
    return files


def text_name(name: str) -> str | None:
    """Checkpoint name -> our parameter name, or None when it is a skipped (vision / MTP) tensor."""
    if any(name.startswith(p) for p in SKIPPED):
        return None
    for prefix in TEXT_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name  # lm_head.weight


def _destination(model: Qwen35, params: dict, ours: str):
    """(parameter name, view of it this tensor fills) for one of our names, None if it maps nowhere."""
    m = EXPERT.match(ours)
    if m:  # transformers' per-expert layout -> slices of the fused [E, 2I, H] / [E, H, I] parameters
        layer, e, part = int(m[1]), int(m[2]), m[3]
        pre = f"layers.{layer}.mlp.experts."
        inter = model.config.moe_intermediate_size
        if part == "down_proj":
            p = params.get(pre + "down_proj")
            return (pre + "down_proj", lambda t: t[e]) if p is not None and e < p.shape[0] else None
        p = params.get(pre + "gate_up_proj")
        rows = slice(0, inter) if part == "gate_proj" else slice(inter, 2 * inter)
        return (pre + "gate_up_proj", lambda t: t[e, rows]) if p is not None and e < p.shape[0] else None
    if ours in params:
        return ours, lambda t: t
    return None


def _plan(model: Qwen35, entries: list[Entry], report: LoadReport):
    """Matches every checkpoint tensor to a parameter view and checks shapes, before any data is read."""
    params = dict(model.named_parameters())  # tied lm_head appears once, as embed_tokens.weight
    tied = model.config.tie_word_embeddings
    plan, filled = [], {name: 0 for name in params}
    for entry in entries:
        ours = text_name(entry.name)
        if ours is None:
            what = next(v for k, v in SKIPPED.items() if entry.name.startswith(k))
            report.skipped[what] = report.skipped.get(what, 0) + 1
            continue
        if IGNORED.search(ours) or (tied and ours == "lm_head.weight"):
            continue
        refuse_quantized(entry)
        dest = _destination(model, params, ours)
        if dest is None:
            raise DeployKitError(f"unexpected tensor {entry.name} in {entry.file.name}: not part of the model "
                                 "that config.json describes", "check that config.json belongs to these weights")
        pname, view = dest
        expected = tuple(view(params[pname]).shape)
        if entry.shape != expected:
            raise DeployKitError(f"shape mismatch for {entry.name} in {entry.file.name}: checkpoint has "
                                 f"{list(entry.shape)}, config.json implies {list(expected)}",
                                 "check that config.json belongs to these weights")
        filled[pname] += math.prod(expected)
        plan.append((entry, pname, view))
    for pname, p in params.items():
        if filled[pname] != p.numel():
            hint = "per-expert gate_proj/up_proj/down_proj tensors" if ".experts." in pname else None
            raise DeployKitError(f"missing tensor {_hf_name(entries, pname)} (or an incomplete set of its parts)"
                                 f" in the checkpoint", hint and f"expected the fused tensor or all {hint}")
    return plan


def _hf_name(entries: list[Entry], ours: str) -> str:
    """Our name in the checkpoint's own naming (prefix taken from the tensors it has)."""
    for e in entries:
        for prefix in TEXT_PREFIXES:
            if e.name.startswith(prefix):
                return ours if ours == "lm_head.weight" else prefix + ours
    return ours


def _copy_shard(file: Path, items: list, params: dict) -> None:
    """Copies each planned tensor of one shard from a private memory map into its parameter view."""
    page = mmap.PAGESIZE
    with open(file, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as mm:
        for entry, pname, view in sorted(items, key=lambda it: it[0].start):
            dtype = ST_DTYPES[entry.dtype]
            n = math.prod(entry.shape)
            if n:
                src = torch.frombuffer(mm, dtype=dtype, count=n, offset=entry.start).view(entry.shape)
                with torch.no_grad():
                    view(params[pname]).copy_(src)
                del src
            lo = entry.start - entry.start % page
            if hasattr(mm, "madvise") and entry.end > lo:  # drop this tensor's pages from our RSS
                mm.madvise(mmap.MADV_DONTNEED, lo, entry.end - lo)


def load_checkpoint(model: Qwen35, path: str | Path, entries: list[Entry] | None = None) -> LoadReport:
    """Fills a materialised model from a checkpoint, tensor by tensor."""
    path = Path(path)
    report = LoadReport(files=checkpoint_files(path))
    entries = entries if entries is not None else [e for f in report.files for e in read_header(f)]
    plan = _plan(model, entries, report)
    params = dict(model.named_parameters())
    for file in report.files:
        items = [it for it in plan if it[0].file == file]
        try:
            _copy_shard(file, items, params)
        except (OSError, ValueError) as exc:
            raise _corrupt(file, f"cannot read tensor data ({exc})") from None
    report.loaded = len(plan)
    if report.skipped:
        log.warning("skipped %s: deploykit builds the text model only",
                    ", ".join(f"{n} tensors of the {what}" for what, n in report.skipped.items()))
    return report


def _materialise(model: Qwen35, device) -> Qwen35:
    model = model.to_empty(device=device)
    if model.config.tie_word_embeddings:  # to_empty keeps the tie, re-assert it
        model.lm_head.weight = model.embed_tokens.weight
    return model.eval().requires_grad_(False)


def load_model(path: str | Path, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu") -> Qwen35:
    """Qwen35 from a Hugging Face checkpoint directory, loaded straight to dtype and device."""
    path = Path(path)
    files = checkpoint_files(path)  # refuses pickle before anything else
    config = load_config(path if path.is_dir() else path.parent)
    entries = [e for f in files for e in read_header(f)]
    model = Qwen35(config, dtype=dtype, device="meta")
    _plan(model, entries, LoadReport())  # shape/missing checks before allocating anything
    model = _materialise(model, device)
    load_checkpoint(model, path, entries)
    return model


# random weights ----------------------------------------------------------------------------------
RANDOM_BLOCK = 1 << 22  # elements drawn per generator call: fixed so results do not depend on memory limits


def _seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "little") & ((1 << 63) - 1)


def random_tensor(name: str, shape, dtype: torch.dtype = torch.float32, seed: int = 0,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """The random value of parameter `name` (our naming, e.g. 'layers.0.linear_attn.A_log'): a pure function
    of (name, shape, dtype, seed), so an exporter can regenerate any one tensor without building the model.
    Scales keep a deep random model's activations O(1): projections N(0, 1/fan_in), zero-centred norms
    N(0, 0.1^2), gated norm 1 + N(0, 0.1^2), A = U(1, 16) (transformers' init range is U(0.01, 16)), dt_bias 1."""
    gen = torch.Generator().manual_seed(_seed(seed, name))
    shape = tuple(shape)
    out = torch.empty(shape, dtype=dtype, device=device)
    flat = out.view(-1)
    fan_in = shape[-1] if shape else 1
    for i in range(0, flat.numel(), RANDOM_BLOCK):
        n = min(RANDOM_BLOCK, flat.numel() - i)
        if name.endswith("A_log"):
            block = torch.empty(n).uniform_(1, 16, generator=gen).log_()
        elif name.endswith("dt_bias"):
            block = torch.ones(n)
        elif name.endswith("linear_attn.norm.weight"):
            block = 1 + 0.1 * torch.randn(n, generator=gen)
        elif name.endswith("norm.weight"):
            block = 0.1 * torch.randn(n, generator=gen)
        elif name.endswith("embed_tokens.weight"):
            block = torch.randn(n, generator=gen)
        else:
            block = torch.randn(n, generator=gen) / math.sqrt(fan_in)
        flat[i:i + n].copy_(block)
    return out


def random_model(config: TextConfig | str | Path, dtype: torch.dtype = torch.bfloat16,
                 device: str | torch.device = "cpu", seed: int = 0) -> Qwen35:
    """Qwen35 with random_tensor weights; on device='meta' only shapes exist (no memory is used)."""
    if not isinstance(config, TextConfig):
        config = load_config(config)
    model = Qwen35(config, dtype=dtype, device="meta")
    if str(device) == "meta":
        return model.eval().requires_grad_(False)
    model = _materialise(model, device)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(random_tensor(name, p.shape, p.dtype, seed, device=p.device))
    return model
