"""Planner speed: the full catalog x all precisions on a 3-kind mixed inventory must plan in under 1 s.

Measures (1) a cold `make_plan` in a fresh interpreter (profile loading included), (2) warm `make_plan` calls,
(3) the end-to-end CLI (`python -m deploykit plan ...`, JSON and table, interpreter start-up and imports included).
Run: python bench/bench_plan.py [--inventory 4xA100,2xL40S,1xthor] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time

TARGET_S = 1.0  # issue 2 acceptance: full catalog x all precisions x a 3-kind mixed inventory in under 1 s

COLD = (
    "import time; t = time.perf_counter(); from deploykit.planner.plan import make_plan; "
    "p = make_plan({inv!r}, precision='all'); dt = time.perf_counter() - t; "
    "assert len(p.entries) == 24, len(p.entries); print(dt)"
)


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inventory", default="4xA100,2xL40S,1xthor")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    cold = [
        float(
            subprocess.run(
                [sys.executable, "-c", COLD.format(inv=args.inventory)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        for _ in range(args.repeats)
    ]

    from deploykit.planner.plan import make_plan

    make_plan(args.inventory)
    warm = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        make_plan(args.inventory, precision="all")
        warm.append(time.perf_counter() - t)

    cli, table = [], []
    for fmt, out in (("json", cli), ("table", table)):
        for _ in range(args.repeats):
            t = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "deploykit", "plan", "--gpus", args.inventory, "--format", fmt],
                check=True,
                capture_output=True,
            )
            out.append(time.perf_counter() - t)

    print(f"machine: {platform.node()} {platform.machine()} python {platform.python_version()}")
    print(f"inventory {args.inventory}: 8 models x 3 precisions, {args.repeats} runs, median (min-max)")
    for label, xs in (
        ("make_plan cold (fresh interpreter, profiles loaded)", cold),
        ("make_plan warm", warm),
        ("CLI end to end (interpreter + imports + JSON)", cli),
        ("CLI end to end, rich table", table),
    ):
        print(f"  {label}: {_median(xs) * 1e3:.0f} ms ({min(xs) * 1e3:.0f}-{max(xs) * 1e3:.0f})")
    ok = max(_median(cli), _median(table)) < TARGET_S
    print(f"target < {TARGET_S:.0f} s end to end: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
