"""What ptxas makes of every plugin kernel, on the CPU: registers, spilled bytes, resident blocks per SM and the
width of the global memory ops, as a markdown table for bench/RESULTS.md. Static evidence, not timings: it
says which configurations cannot reach the bandwidth targets (spills, narrow loads) before a GPU call is spent.

    python bench/static_resources.py [ARCH]      # default 90 (H100/H200); needs TRITON_INTERPRET unset

Rows: the AOT kernels at Qwen3.5 shapes (deploykit.plugins.aot.qwen35_specs; 16 key / 32 value heads of 128,
35B-A3B experts), then the GDN prefill kernels at the tiles and warps bench_gdn.py's sweeps time.
"""

from __future__ import annotations

import dataclasses
import os
import sys


def variants(specs: dict) -> dict:
    """The persistent chunk kernel and the split scans at the other tiles/warps the prefill sweeps try."""
    out = {}
    for name, bv_key in (("gdn_chunk", "BV"), ("gdn_split_scan", "BVS"), ("gdn_split3_states", "BVS")):
        base = specs[name]
        for bv in (16, 32, 64):
            for warps in (4, 8):
                if (bv, warps) != (base.constexprs[bv_key], base.num_warps):
                    cx = {**base.constexprs, bv_key: bv}
                    out[f"{name} {bv_key}={bv} w{warps}"] = dataclasses.replace(base, constexprs=cx, num_warps=warps)
    return out


def main() -> None:
    os.environ.pop("TRITON_INTERPRET", None)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    from deploykit.plugins import sass
    from deploykit.plugins.aot import compile_ptx, qwen35_specs

    arch = int(sys.argv[1]) if len(sys.argv) > 1 else 90
    specs = qwen35_specs()
    print(f"sm_{arch}, bf16 activations; blocks/SM from sm_90 limits (plugins/sass.py SM90)\n")
    print("| kernel | warps | regs | spill B/thread | shared KB | blocks/SM | global loads (bits: count) | stores |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, spec in {**specs, **variants(specs)}.items():
        k = compile_ptx(spec, arch)
        r = sass.read(k.cubin)
        fmt = lambda c: ", ".join(f"{b}: {n}" for b, n in sorted(c.items())) or "-"
        blocks = sass.blocks_per_sm(r.regs, k.block_x, k.shared)
        print(f"| {name} | {k.num_warps} | {r.regs} | {r.spill} | {k.shared / 1024:.1f} | {blocks} | "
              f"{fmt(r.loads + r.async_copies)} | {fmt(r.stores)} |", flush=True)


if __name__ == "__main__":
    main()
