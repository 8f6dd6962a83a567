"""Peak RSS and time of `deploykit export --random-weights` at real model dimensions (streaming-weights target).

Targets (issue 4): Qwen3.5-2B dims, all 24 layers, peak RSS < 2 GiB on a 2-core machine; 35B-A3B dims with
--layers 4 no higher. Each export runs in a fresh child process (`python -m deploykit export ...`), and its
peak RSS is the child's ru_maxrss from wait4, so the parent's memory never counts.

    python bench/bench_export.py                       # both cases, bf16, prints a Markdown table
    python bench/bench_export.py --case 2b --dtype fp16 --keep out/
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
}
RSS_LIMIT_GIB = 2.0  # the bound for the 2B export


def run_case(name: str, dtype: str, out: Path) -> dict:
    cmd = [sys.executable, "-m", "deploykit", "export", *CASES[name], "--dtype", dtype, "-o", str(out), "-q"]
    start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.time() - start
    log = proc.stdout.read()
    code = os.waitstatus_to_exitcode(status)
    data = out / "model.onnx.data"
    return {
        "case": name, "cmd": " ".join(cmd[1:]), "exit": code, "seconds": seconds,
        "peak_rss_gib": usage.ru_maxrss / 2**20,  # Linux reports KiB
        "data_gib": data.stat().st_size / 2**30 if data.exists() else 0.0, "log": log.strip().splitlines()[-3:],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=[*CASES, "all"], default="all")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--keep", type=Path, help="keep the exports under this directory")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_export."))
    rows = []
    try:
        for name in CASES if args.case == "all" else [args.case]:
            row = run_case(name, args.dtype, root / name)
            rows.append(row)
            print(f"{name}: exit {row['exit']}, {row['seconds']:.0f} s, peak RSS {row['peak_rss_gib']:.2f} GiB, "
                  f"data {row['data_gib']:.2f} GiB", flush=True)
            if row["exit"]:
                print("\n".join(row["log"]))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print("| case | command | time (s) | peak RSS (GiB) | model.onnx.data (GiB) |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | `deploykit {r['cmd'].split(' deploykit ', 1)[-1]}` | {r['seconds']:.0f} | "
              f"{r['peak_rss_gib']:.2f} | {r['data_gib']:.2f} |")
    ok = all(r["exit"] == 0 for r in rows) and all(r["peak_rss_gib"] < RSS_LIMIT_GIB for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
