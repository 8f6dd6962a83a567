"""Peak RSS and time of `deploykit export` at real model dimensions (the streaming-weights target).

Targets (issue 4): Qwen3.5-2B dims, all 24 layers, peak RSS < 2 GiB on a 2-core machine; 35B-A3B dims with
--layers 4 no higher. Each export runs in a fresh child process (`python -m deploykit export ...`), and its
peak RSS is the child's ru_maxrss from wait4. Linux starts a forked child's maxrss at the parent's RSS, so the
parent imports nothing heavy (the 2b-checkpoint case writes its checkpoint in another child).

    python bench/bench_export.py                       # both cases, bf16, prints a Markdown table
    python bench/bench_export.py --case 2b --dtype fp16 --keep out/
    python bench/bench_export.py --case 2b-checkpoint --dtype fp32   # streamed from safetensors, bf16 -> fp32
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "2b": ["qwen3.5-2b", "--random-weights"],  # all 24 layers
    "35b-a3b-l4": ["qwen3.5-35b-a3b", "--random-weights", "--layers", "4"],
    "2b-checkpoint": ["{checkpoint}"],  # a 2B-sized bf16 safetensors checkpoint (written first), to --dtype
}
SHARD_BYTES = 1 << 30  # checkpoint shard size for the 2b-checkpoint case


def write_checkpoint(out: Path, alias: str = "qwen3.5-2b") -> Path:
    """A random bf16 checkpoint of the catalog model's text dims (multimodal key layout, 1 GiB shards)."""
    import json

    import torch
    from safetensors.torch import save_file

    from deploykit.export.source import _catalog_entry
    from deploykit.model.config import parse_config
    from deploykit.model.loader import random_tensor
    from deploykit.model.model import Qwen35

    config = _catalog_entry(alias)["config"]
    model = Qwen35(parse_config(config), dtype=torch.bfloat16, device="meta")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config))
    shard, size, index = {}, 0, {}

    def flush():
        name = f"model-{len(set(index.values())) + 1:05d}.safetensors"
        save_file(shard, out / name, metadata={"format": "pt"})
        index.update({k: name for k in shard})
        shard.clear()

    for name, p in model.named_parameters():  # tied lm_head is not a separate parameter
        shard["model.language_model." + name if name != "lm_head.weight" else name] = random_tensor(
            name, p.shape, torch.bfloat16, 0
        )
        size += p.numel() * 2
        if size >= SHARD_BYTES:
            flush()
            size = 0
    if shard:
        flush()
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}))
    return out


RSS_LIMIT_GIB = 2.0  # the bound for the 2B export


def run_case(name: str, dtype: str, out: Path, checkpoint: Path | None = None) -> dict:
    args = [a.format(checkpoint=checkpoint) for a in CASES[name]]
    cmd = [sys.executable, "-m", "deploykit", "export", *args, "--dtype", dtype, "-o", str(out), "-q"]
    start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.time() - start
    log = proc.stdout.read()
    code = os.waitstatus_to_exitcode(status)
    data = out / "model.onnx.data"
    return {
        "case": name,
        "cmd": " ".join(cmd[1:]),
        "exit": code,
        "seconds": seconds,
        "peak_rss_gib": usage.ru_maxrss / 2**20,  # Linux reports KiB
        "data_gib": data.stat().st_size / 2**30 if data.exists() else 0.0,
        "log": log.strip().splitlines()[-3:],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--case",
        choices=[*CASES, "all"],
        default="all",
        help="all = the two random-weights cases; 2b-checkpoint writes a 3.5 GiB checkpoint first",
    )
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--keep", type=Path, help="keep the exports under this directory")
    ap.add_argument("--write-checkpoint", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.write_checkpoint:
        write_checkpoint(args.write_checkpoint)
        return 0
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_export."))
    rows = []
    try:
        for name in ["2b", "35b-a3b-l4"] if args.case == "all" else [args.case]:
            ckpt = None
            if name == "2b-checkpoint":
                # in a child: a forked child's ru_maxrss starts at the parent's RSS, so the parent stays small
                t0 = time.time()
                ckpt = root / "checkpoint"
                subprocess.run([sys.executable, __file__, "--write-checkpoint", str(ckpt)], check=True)
                print(f"wrote checkpoint in {time.time() - t0:.0f} s", flush=True)
            row = run_case(name, args.dtype, root / name, ckpt)
            if ckpt:
                shutil.rmtree(ckpt, ignore_errors=True)
            rows.append(row)
            print(
                f"{name}: exit {row['exit']}, {row['seconds']:.0f} s, "
                f"peak RSS {row['peak_rss_gib']:.2f} GiB, "
                f"data {row['data_gib']:.2f} GiB",
                flush=True,
            )
            if row["exit"]:
                print("\n".join(row["log"]))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}"
    )
    print("| case | command | time (s) | peak RSS (GiB) | model.onnx.data (GiB) |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | `deploykit {r['cmd'].split(' deploykit ', 1)[-1]}` | {r['seconds']:.0f} | "
            f"{r['peak_rss_gib']:.2f} | {r['data_gib']:.2f} |"
        )
    ok = all(r["exit"] == 0 for r in rows) and all(r["peak_rss_gib"] < RSS_LIMIT_GIB for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
