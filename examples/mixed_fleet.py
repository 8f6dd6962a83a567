"""Library use of the planner on a mixed fleet: which model to serve where, and what the fleet can sustain.

Run: python examples/mixed_fleet.py [--gpus 4xA100-80GB,2xL40S,1xthor] [--context 32k]
"""

from __future__ import annotations

import argparse

from deploykit.planner.plan import make_plan


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", default="4xA100-80GB,2xL40S,1xthor")
    ap.add_argument("--context", default="32k")
    args = ap.parse_args(argv)

    plan = make_plan(args.gpus, precision="all", context=args.context)
    print(f"fleet {args.gpus}, context {plan.request.context} tokens")
    for e in plan.entries:
        if not e.fits:
            continue
        groups = " + ".join(f"{g.dp}x tp{g.tp}/ep{g.ep}/pp{g.pp} on {g.gpu}" for g in e.layout.groups)
        print(f"  {e.model:<18} {e.precision:<5} {groups:<60} {e.max_batch:>6} seqs "
              f"{e.throughput.decode_tok_s_max:>10,.0f} tok/s decode")
    print("recommendation:", plan.recommendation)


if __name__ == "__main__":
    main()
