"""Every plugin kernel compiles ahead of time to PTX for sm_80, sm_87 and sm_90 on this CPU-only machine
(what a TensorRT `aot_impl` embeds). Runs in subprocesses: the interpreter (on in these tests) replaces
kernels by Python functions, which cannot be compiled.

Budget: the chunked GDN kernels dominate (10-45 s each on a loaded 2-core machine). The blocked-solve
variant is gdn_chunk_kernel with one constexpr flipped, so it is compiled for sm_90 only; every kernel
function is compiled for all three architectures."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from deploykit.plugins.aot import AOT_ARCHS

SMEM_LIMIT = {
    80: 163 * 1024,
    87: 163 * 1024,
    90: 227 * 1024,
}  # max opt-in shared memory per block (CUDA guide)
SM90_ONLY = "gdn_chunk_blocked"


def test_every_kernel_compiles_to_ptx_for_each_arch(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # silences triton 3.9's default-change warning
    env["TRITON_CACHE_DIR"] = str(tmp_path / "cache")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "deploykit.plugins.aot", str(tmp_path / "ptx"), str(arch)]
            + ([] if arch == 90 else ["--skip", SM90_ONLY]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for arch in AOT_ARCHS
    ]  # one process per arch: compiles are single-threaded
    rows = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        rows += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    names = {r["name"] for r in rows}
    assert {
        "gdn_decode",
        "gdn_chunk",
        "gdn_chunk_blocked",
        "gdn_split_prep",
        "gdn_split_scan",
        "gdn_split3_states",
        "gdn_split3_out",
        "conv_decode",
        "moe_moe_gate_up_kernel",
        "moe_moe_down_kernel",
        "moe_moe_pair_gate_up_kernel",
        "moe_moe_token_down_kernel",
        "moe_prefill_MoEGateUp",
        "moe_prefill_MoEDown",
    } <= names
    assert len(rows) == len(names) * len(AOT_ARCHS) - (len(AOT_ARCHS) - 1)  # SM90_ONLY once
    for r in rows:
        ptx = Path(r["ptx"]).read_text()
        target = re.search(r"^\.target\s+(\S+)", ptx, re.MULTILINE).group(1)
        assert target.removesuffix("a") == f"sm_{r['arch']}", (r["name"], target)  # sm_90 compiles as sm_90a
        assert re.search(rf"\.visible \.entry {re.escape(r['entry'])}\(", ptx), r["name"]
        assert r["scratch"] == 0, r  # the two trailing scratch pointers Triton appends are never read
        assert r["shared"] <= SMEM_LIMIT[r["arch"]], r  # launchable: within the arch's shared memory
