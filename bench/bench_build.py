"""Build time and peak memory of a full-size engine: Qwen3.5-0.8B (all 24 layers, random weights, fp16)
exported by deploykit and built by TensorRT for RTX for sm_89 on this (GPU-less) machine.

    python bench/bench_build.py [--model qwen3.5-0.8b] [--dtype float16] [--target sm89] [--work DIR]

Export and build each run in a child process, so each peak RSS (os.wait4's ru_maxrss) belongs to one step.
Prints a markdown row for bench/RESULTS.md. Generated files stay in --work (default: a temp dir, removed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXPORT = """
import sys
from deploykit.export import export_onnx
export_onnx(sys.argv[1], sys.argv[2], dtype=sys.argv[3], random_weights=True, seed=0, progress=False)
"""


def run_child(argv: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS GiB, combined output) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({proc.returncode}):\n{out[-3000:]}")
    return wall, usage.ru_maxrss / 2**20, out  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen3.5-0.8b")
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--target", default="sm89")
    ap.add_argument("--max-batch", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--max-past", type=int, default=4096)
    ap.add_argument("--no-plugins", action="store_true")
    ap.add_argument("--work", type=Path, default=None, help="keep the export and engine here")
    ap.add_argument("--reuse-export", action="store_true", help="build from the export already in --work")
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_build_"))
    out = work / "export"
    try:
        t_exp, rss_exp = float("nan"), float("nan")
        if not (args.reuse_export and (out / "deploykit.json").is_file()):
            t_exp, rss_exp, _ = run_child([sys.executable, "-c", EXPORT, args.model, str(out), args.dtype])
        build = [
            sys.executable,
            "-m",
            "deploykit",
            "build",
            str(out),
            "--backend",
            "tensorrt-rtx",
            "--target",
            args.target,
            "--max-batch",
            str(args.max_batch),
            "--max-tokens",
            str(args.max_tokens),
            "--max-past",
            str(args.max_past),
        ] + (["--no-plugins"] if args.no_plugins else [])
        t_build, rss_build, log = run_child(build)
        engine = out / f"model.{args.target}{'.inlined' if args.no_plugins else ''}.engine"
        manifest = json.loads(engine.with_name(engine.name + ".json").read_text())
        onnx_bytes = sum(f.stat().st_size for f in out.glob("model.onnx*"))
        layers = json.loads((out / "deploykit.json").read_text())["layers"]
        print(log.strip())
        print(
            f"\nexport: {t_exp:.1f} s, peak RSS {rss_exp:.2f} GiB; ONNX + data {onnx_bytes / 2**30:.2f} GiB"
        )
        print(
            f"build:  {t_build:.1f} s wall (TensorRT {manifest['build_seconds']:.1f} s), peak RSS {rss_build:.2f} GiB; "
            f"engine {manifest['engine']['bytes'] / 2**30:.2f} GiB, {manifest['plugin_layers']} plugin layers"
        )
        print(
            "\n| date | machine | model | dtype | target | plugins | profiles (B, T, P max) | export s | export RSS GiB "
            "| build s | build RSS GiB | engine GiB |"
        )
        print(
            f"| {time.strftime('%Y-%m-%d')} | {platform.machine()}, {os.cpu_count()} cores, no GPU | {args.model} "
            f"({layers} layers, random) | {args.dtype} | {args.target} | {manifest['plugin_layers']} PLUGIN_V3 | "
            f"{args.max_batch}, {args.max_tokens}, {args.max_past} | {t_exp:.0f} | {rss_exp:.2f} | {t_build:.0f} | "
            f"{rss_build:.2f} | {manifest['engine']['bytes'] / 2**30:.2f} |"
        )
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
