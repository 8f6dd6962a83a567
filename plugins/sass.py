"""What ptxas made of a compiled kernel, read on the CPU: registers, spills and the width of its memory ops.

A bandwidth-bound kernel reaches the copy bandwidth only if it moves its bytes with 128-bit instructions and
keeps its working set out of local memory; both are visible in the machine code (SASS) before any GPU runs it.
These are static counts (instructions in the program, not executions), evidence about a kernel's shape, not a
timing. `cuobjdump` ships in the triton wheel next to ptxas (triton/backends/nvidia/bin).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import DeployKitError

# H100 / H200 (sm_90) per-SM limits: CUDA C++ Programming Guide, "Technical Specifications per Compute
# Capability" (65536 32-bit registers, 2048 threads, 32 blocks, 228 KB shared memory of which 1 KB per
# block is reserved by the system) and the register allocation unit of 256 per warp.
SM90 = {"regs": 65536, "threads": 2048, "blocks": 32, "shared": 228 * 1024, "reserved_shared": 1024, "reg_unit": 256}

_GLOBAL = re.compile(r"\b(LDG|STG|LDGSTS)\.E((?:\.\w+)*)")
_LOCAL = re.compile(r"\b(LDL|STL)\b")
_WIDTH = {"U8": 8, "S8": 8, "U16": 16, "S16": 16, "64": 64, "128": 128}


@dataclass(frozen=True)
class Resources:
    regs: int  # registers per thread
    spill: int  # STACK: local-memory bytes per thread (register spills and local arrays)
    local_ops: int  # LDL/STL instructions
    loads: Counter  # global loads by bits per thread and instruction (LDG; cp.async counts as LDGSTS below)
    stores: Counter  # global stores by bits
    async_copies: Counter  # LDGSTS (cp.async global -> shared) by bits

    def wide_load_share(self) -> float:
        """Fraction of the global load instructions (LDG and cp.async) that move 128 bits."""
        every = self.loads + self.async_copies
        total = sum(every.values())
        return (every[128] / total) if total else 0.0


def cuobjdump() -> str:
    import triton

    path = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not path.exists():
        raise DeployKitError(f"cuobjdump is not in the triton wheel ({path})", "pip install triton>=3.2")
    return str(path)


def read(cubin: bytes) -> Resources:
    """Resources of the (single) kernel in a cubin."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        usage = _run("--dump-resource-usage", path)
        sass = _run("--dump-sass", path)
    found = re.search(r"REG:(\d+) STACK:(\d+)", usage)
    if found is None:
        raise ValueError(f"no resource usage in cuobjdump's output: {usage[:300]!r}")
    by_kind: dict[str, Counter] = {"LDG": Counter(), "STG": Counter(), "LDGSTS": Counter()}
    for kind, suffixes in _GLOBAL.findall(sass):
        bits = [_WIDTH[s] for s in suffixes.split(".") if s in _WIDTH]
        by_kind[kind][bits[0] if bits else 32] += 1
    return Resources(
        regs=int(found[1]),
        spill=int(found[2]),
        local_ops=len(_LOCAL.findall(sass)),
        loads=by_kind["LDG"],
        stores=by_kind["STG"],
        async_copies=by_kind["LDGSTS"],
    )


def blocks_per_sm(regs: int, threads: int, shared: int, limits: dict = SM90) -> int:
    """Resident blocks per SM (occupancy) from the three limits; registers are allocated per warp in units."""
    warps = -(-threads // 32)
    per_warp = -(-regs * 32 // limits["reg_unit"]) * limits["reg_unit"]
    by_regs = limits["regs"] // (per_warp * warps)
    by_threads = limits["threads"] // threads
    by_shared = limits["shared"] // (shared + limits["reserved_shared"]) if shared else limits["blocks"]
    return min(by_regs, by_threads, by_shared, limits["blocks"])


def _run(flag: str, path: Path) -> str:
    return subprocess.run([cuobjdump(), flag, str(path)], capture_output=True, text=True, check=True).stdout
