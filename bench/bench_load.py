"""Peak RSS of the streaming loader on a checkpoint of the Qwen3.5-2B text dimensions (issue 3).

Writes a random-weights bf16 safetensors checkpoint in the multimodal layout (model.language_model.*,
2 shards + index), tensor by tensor into a temp dir; loads it with deploykit.model.loader.load_model in a
fresh subprocess; reports that process's peak RSS (ru_maxrss) against the model's own bytes + 1 GiB;
deletes the checkpoint.

    python bench/bench_load.py [--dtype bfloat16] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 2**30
LIN, FULL = "linear_attention", "full_attention"
# Qwen3.5-2B text config (shared/reference/qwen35_configs.json: Megatron-LM _VARIANT_CONFIGS and slime
# scripts/models/qwen3.5-2B.sh; tied embeddings, 3 Gated DeltaNet layers per full-attention layer).
QWEN35_2B_TEXT = {
    "model_type": "qwen3_5_text",
    "vocab_size": 248320,
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 24,
    "layer_types": [FULL if (i + 1) % 4 == 0 else LIN for i in range(24)],
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 256,
    "linear_num_key_heads": 16,
    "linear_num_value_heads": 16,
    "linear_key_head_dim": 128,
    "linear_value_head_dim": 128,
    "linear_conv_kernel_dim": 4,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000000, "partial_rotary_factor": 0.25},
}

LOAD_SNIPPET = """
import json, resource, sys, time, torch
from deploykit.model.loader import load_model
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t = time.perf_counter()
model = load_model(sys.argv[1], dtype=getattr(torch, sys.argv[2]), device="cpu")
dt = time.perf_counter() - t
own = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "rss_after_imports": rss0,
                  "model_bytes": own, "params": sum(p.numel() for p in model.parameters()), "load_s": dt}))
"""


def write_checkpoint(out: Path, dtype, seed: int = 0) -> int:
    """Streams a random checkpoint to disk; returns its size in bytes. Peak memory: the largest tensor."""
    import torch

    from deploykit.model.config import parse_config
    from deploykit.model.model import Qwen35

    config = {
        "model_type": "qwen3_5",
        "architectures": ["Qwen3_5ForConditionalGeneration"],
        "tie_word_embeddings": True,
        "text_config": QWEN35_2B_TEXT,
    }
    meta = Qwen35(parse_config(config), dtype=dtype, device="meta")
    tensors = [("model.language_model." + n, tuple(p.shape)) for n, p in meta.named_parameters()]
    code = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}[dtype]
    half = len(tensors) // 2
    weight_map, total = {}, 0
    for i, part in enumerate([tensors[:half], tensors[half:]]):
        fname = f"model-{i + 1:05d}-of-00002.safetensors"
        total += _write_shard(out / fname, part, dtype, code, seed)
        weight_map.update({n: fname for n, _ in part})
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    (out / "config.json").write_text(json.dumps(config))
    return total


def _write_shard(path: Path, part, dtype, code: str, seed: int) -> int:
    """safetensors format: u64 header length, JSON header (8-byte padded), raw little-endian tensor bytes."""
    import torch

    from deploykit.model.loader import random_tensor

    header, offset = {}, 0
    for name, shape in part:
        nbytes = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for name, shape in part:
            t = random_tensor(name.removeprefix("model.language_model."), shape, dtype, seed)
            f.write(t.view(torch.uint8).numpy().tobytes())
            del t
    return offset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--keep", type=Path, help="write the checkpoint here and keep it")
    ap.add_argument("--write-only", type=Path, help=argparse.SUPPRESS)  # internal: the writer subprocess
    args = ap.parse_args()
    if args.write_only:
        import torch

        print(write_checkpoint(args.write_only, getattr(torch, args.dtype)))
        return
    # This parent never imports torch: Linux children start with the parent's ru_maxrss high-water mark,
    # so the writer and the loader each run in their own subprocess of a small parent.
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="dk_bench_load_"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--dtype", args.dtype, "--write-only", str(tmp)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        size = int(out.strip().splitlines()[-1])
        print(f"wrote {size / GIB:.2f} GiB ({args.dtype}) in {time.perf_counter() - t:.0f} s to {tmp}")
        res = subprocess.run(
            [sys.executable, "-c", LOAD_SNIPPET, str(tmp), args.dtype],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "2"},
        )
        r = json.loads(res.stdout.strip().splitlines()[-1])
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    limit = r["model_bytes"] + GIB
    print(
        f"Qwen3.5-2B text, {r['params'] / 1e9:.3f} B params, {args.dtype}: model {r['model_bytes'] / GIB:.2f} GiB"
    )
    print(f"  load time {r['load_s']:.1f} s; RSS after imports {r['rss_after_imports'] / GIB:.2f} GiB")
    print(
        f"  peak RSS {r['peak_rss'] / GIB:.2f} GiB; target < model + 1 GiB = {limit / GIB:.2f} GiB: "
        f"{'PASS' if r['peak_rss'] < limit else 'FAIL'} (headroom {(limit - r['peak_rss']) / GIB:.2f} GiB)"
    )


if __name__ == "__main__":
    main()
