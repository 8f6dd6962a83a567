"""Every plugin kernel compiles ahead of time to PTX for sm_80, sm_87 and sm_90 on this CPU-only machine
(what a TensorRT `aot_impl` embeds). Runs in subprocesses: the interpreter (on in these tests) replaces
kernels by Python functions, which cannot be compiled.

Budget: the chunked GDN kernels dominate (10-45 s each on a loaded 2-core machine). The blocked-solve
variant is gdn_chunk_kernel with one constexpr flipped, and split3's 16-bit scratch variants are its three
kernels with other pointer types, so those are compiled for sm_90 only; every kernel function is compiled
for all three architectures."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from deploykit.plugins.aot import AOT_ARCHS

SMEM_LIMIT = {
    80: 163 * 1024,
    87: 163 * 1024,
    90: 227 * 1024,
}  # max opt-in shared memory per block (CUDA guide)
SCRATCH16 = ("gdn_split3_prep16", "gdn_split3_states16", "gdn_split3_out16")  # split3 with 16-bit scratch
SM90_ONLY = ("gdn_chunk_blocked", *SCRATCH16)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> list[dict]:
    """The JSON line `python -m deploykit.plugins.aot` prints for every kernel and arch (PTX path, ptxas'
    registers, spills and memory-op widths)."""
    tmp_path = tmp_path_factory.mktemp("aot")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # silences triton 3.9's default-change warning
    env["TRITON_CACHE_DIR"] = str(tmp_path / "cache")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "deploykit.plugins.aot", str(tmp_path / "ptx"), str(arch)]
            + ([] if arch == 90 else ["--skip", ",".join(SM90_ONLY)]),
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
    return rows


def test_every_kernel_compiles_to_ptx_for_each_arch(compiled):
    rows = compiled
    names = {r["name"] for r in rows}
    assert {
        "gdn_decode",
        "gdn_chunk",
        "gdn_chunk_blocked",
        "gdn_chunk16",
        "gdn_split_prep",
        "gdn_split_scan",
        "gdn_split3_states",
        "gdn_split3_out",
        *SM90_ONLY,
        "conv_decode",
        "moe_moe_gate_up_kernel",
        "moe_moe_down_kernel",
        "moe_moe_pair_gate_up_kernel",
        "moe_moe_token_down_kernel",
        "moe_prefill_MoEGateUp",
        "moe_prefill_MoEDown",
    } <= names
    assert len(rows) == len(names) * len(AOT_ARCHS) - (len(AOT_ARCHS) - 1) * len(SM90_ONLY)  # those once
    for r in rows:
        ptx = Path(r["ptx"]).read_text()
        target = re.search(r"^\.target\s+(\S+)", ptx, re.MULTILINE).group(1)
        assert target.removesuffix("a") == f"sm_{r['arch']}", (r["name"], target)  # sm_90 compiles as sm_90a
        assert re.search(rf"\.visible \.entry {re.escape(r['entry'])}\(", ptx), r["name"]
        assert r["scratch"] == 0, r  # the two trailing scratch pointers Triton appends are never read
        assert r["shared"] <= SMEM_LIMIT[r["arch"]], r  # launchable: within the arch's shared memory


THREADS = 128  # 4 warps: every kernel below (qwen35_specs)
# Bytes each thread streams per unrolled step, hand-derived from the tiles of deploykit.plugins.aot.qwen35_specs:
# moved in 128-bit instructions they need at least bytes / 16 of them, in the loads and (state) in the stores.
STREAMED = {
    "gdn_decode": (128 * 32 * 4 // THREADS, 128 * 32 * 4 // THREADS),  # fp32 state tile [Dk 128, BV 32], in + out
    "moe_moe_pair_gate_up_kernel": (2 * 16 * 256 * 2 // THREADS, 0),  # gate and up rows [BN 16, BK 256] bf16
    "moe_moe_token_down_kernel": (8 * 16 * 256 * 2 // THREADS, 0),  # 8 experts' down rows [BN 16, BK 256] bf16
}
# Spill-free on every arch (Jetson Orin's sm_87 included): the conv, every MoE kernel, and the GDN stage ops'
# three kernels (GatedDeltaPrep's tactic 1 = the split prep, GatedDeltaStates' tactic 2, GatedDeltaOut). The
# other GDN kernels are on sm_90 only; on sm_80/87 ptxas spills 8 B (decode: one pointer, parked before the
# token loop and read back after it) to 3 KB (64-token chunks) of them (bench/RESULTS.md).
NO_SPILL_ANY_ARCH = {"conv_decode", "conv_prefill", "gdn_split_prep", "gdn_stage_states_t2", "gdn_split3_out",
                     "moe_moe_route_kernel", "moe_moe_align_kernel",
                     "moe_moe_gate_up_kernel", "moe_moe_down_kernel", "moe_moe_combine_kernel",
                     "moe_moe_pair_gate_up_kernel", "moe_moe_token_down_kernel", "moe_prefill_MoEGateUp",
                     "moe_prefill_MoEDown"}
NO_SPILL = {*STREAMED, *NO_SPILL_ANY_ARCH, "gdn_chunk16", *SCRATCH16}  # SCRATCH16: 156-226 registers


def test_bandwidth_bound_kernels_stream_in_128_bit_ops_without_spills(compiled):
    """What the H100 bandwidth targets need, read from ptxas' sm_90 machine code (plugins/sass.py): the decode
    kernels move their state and expert weights with 128-bit loads and stores (the AOT PTX declares its tensors
    16-byte aligned, as Triton's JIT does for torch tensors) and keep their working set out of local memory."""
    sm90 = {r["name"]: r for r in compiled if r["arch"] == 90}
    for name, (load_bytes, store_bytes) in STREAMED.items():
        r = sm90[name]
        assert r["loads"].get("128", 0) >= load_bytes // 16, (name, r["loads"])
        assert r["stores"].get("128", 0) >= store_bytes // 16, (name, r["stores"])
        assert "16" not in r["loads"] or name == "gdn_decode", (name, r["loads"])  # gdn: q/k/v/beta, one each
    for name in NO_SPILL:
        assert sm90[name]["spill"] == 0, (name, sm90[name]["regs"], sm90[name]["spill"])
    for r in compiled:
        assert r["name"] not in NO_SPILL_ANY_ARCH or r["spill"] == 0, r


@pytest.mark.parametrize(
    "regs,threads,shared,blocks",
    [
        (80, 128, 512, 6),  # 80 * 32 = 2560 registers a warp, 4 warps: 65536 // 10240
        (255, 128, 0, 2),  # 255 * 32 = 8160, allocated as 8192 a warp: 65536 // 32768
        (32, 128, 0, 16),  # registers allow 16, threads 2048 // 128 = 16
        (64, 128, 100 * 1024, 2),  # shared: 228 KB // (100 KB + 1 KB reserved)
    ],
)
def test_blocks_per_sm_follows_the_cuda_guide_limits(regs, threads, shared, blocks):
    from deploykit.plugins.sass import blocks_per_sm

    assert blocks_per_sm(regs, threads, shared) == blocks


def _qwen_gdn_inputs(B, T):
    """Qwen3.5 GDN shapes (16 key / 32 value heads of 128), bf16, on the CPU: nothing is launched."""
    import torch

    z = lambda *s, dtype=torch.bfloat16: torch.zeros(*s, dtype=dtype)  # noqa: E731
    return (z(B, T, 16, 128), z(B, T, 16, 128), z(B, T, 32, 128), z(B, T, 32, dtype=torch.float32),
            z(B, T, 32), z(B, 32, 128, 128, dtype=torch.float32), 128**-0.5, 1)


def _assert_same_spec(got, spec, kernel) -> None:
    """A launch (as spec_of_launch reads it) is the KernelSpec: same kernel, pointer types, constexprs, warps."""
    assert got.kernel is spec.kernel, kernel
    assert (got.args, got.constexprs) == (spec.args, spec.constexprs), kernel
    assert (got.num_warps, got.num_stages) == (spec.num_warps, spec.num_stages), kernel


def test_the_specs_of_launcher_calls_are_the_qdp_plugins_specs(monkeypatch):
    """bench/bench_aot.py compiles `spec_of_launch` of a launcher's call and runs it on the GPU as the AOT
    kernel; that stands for the QDP plugins only if their aot_impls build the same specs (kernel, argument
    types, constexprs, warps). Here for every GDN tactic, GDN's three stages and MoE's pair
    stages at Qwen3.5 shapes."""
    import torch
    from deploykit.plugins.aot import recorded_launch, spec_of_launch
    from deploykit.plugins.gated_delta_net import gated_delta_rule_fwd
    from deploykit.plugins.gated_delta_net.launch import gdn_aot_spec
    from deploykit.plugins.moe import moe_pair_gate_up_fwd
    from deploykit.plugins.moe.launch import moe_stage_aot_spec

    monkeypatch.setenv("TRITON_INTERPRET", "0")  # the GPU's launch options (no interpreter upcast); after the
    # imports above: Triton decides at `@triton.jit` time whether a kernel is interpreted
    gdn = dict(dtype="bfloat16", HK=16, HV=32, K=128, V=128, scale=128**-0.5, use_qk_l2norm=1)
    cases = [  # (launcher, args, kwargs, the QDP aot_impl's spec: plugins/*/qdp.py)
        (gated_delta_rule_fwd, _qwen_gdn_inputs(64, 1), dict(mode="recurrent"), gdn_aot_spec(chunked=False, **gdn)),
        (gated_delta_rule_fwd, _qwen_gdn_inputs(64, 100), dict(mode="chunk", dot_precision="tf32"),
         gdn_aot_spec(chunked=True, **gdn)),
        (gated_delta_rule_fwd, _qwen_gdn_inputs(64, 100), dict(mode="chunk", dot_precision="tf32", solve="blocked"),
         gdn_aot_spec(chunked=True, solve="blocked", **gdn)),
        (gated_delta_rule_fwd, _qwen_gdn_inputs(1, 100),
         dict(mode="chunk", dot_precision="tf32", chunk_size=16, block_v=32, num_warps=4),
         gdn_aot_spec(chunked=True, chunk_size=16, block_v=32, **gdn)),
        (moe_pair_gate_up_fwd, (torch.zeros(2, 2048, dtype=torch.bfloat16), torch.zeros(2, 256, dtype=torch.bfloat16),
                                torch.zeros(256, 1024, 2048, dtype=torch.bfloat16), 8, 1), {},
         moe_stage_aot_spec("MoEPairGateUp", "bfloat16", 2048, 512, 256, 8, 1)),
    ]
    # GatedDeltaRule's stage ops at a 100-token prompt, batch 1 (the plugins' state tile), tf32 dots
    from deploykit.plugins.gated_delta_net import (
        gated_delta_out_fwd,
        gated_delta_prep_fwd,
        gated_delta_states_fwd,
    )
    from deploykit.plugins.gated_delta_net.launch import gdn_stage_aot_spec

    q, k, v, g, beta, h0, scale, l2 = _qwen_gdn_inputs(1, 100)
    f32 = lambda *shape: torch.zeros(*shape)  # noqa: E731  (the stage intermediates: 2 chunks of 64)
    w, u, aqk, gcs = f32(1, 32, 2, 64, 128), f32(1, 32, 2, 64, 128), f32(1, 32, 2, 64, 64), f32(1, 32, 2, 64)
    hs = f32(1, 32, 2, 128, 128)
    stage = lambda op: gdn_stage_aot_spec(op, "bfloat16", 16, 32, 128, 128, scale, l2)  # noqa: E731
    cases += [
        (gated_delta_prep_fwd, (q, k, v, g, beta, scale, l2), dict(dot_precision="tf32"), stage("GatedDeltaPrep")),
        (gated_delta_states_fwd, (k, w, u, gcs, h0, l2), dict(dot_precision="tf32", block_v=32),
         stage("GatedDeltaStates")),
        (gated_delta_out_fwd, (q, hs, u, aqk, gcs, scale, l2), dict(dot_precision="tf32"), stage("GatedDeltaOut")),
    ]
    for fn, args, kwargs, qdp in cases:
        (kernel, _, call_args, call_kwargs), _ = recorded_launch(fn, args, kwargs)
        _assert_same_spec(spec_of_launch(kernel, call_args, call_kwargs), qdp, kernel)


@pytest.mark.parametrize("scratch16", [False, True])
def test_split3_launches_are_the_specs_static_resources_reads(monkeypatch, scratch16):
    """bench/static_resources.py and the sm_90 spill checks above read gdn_split_aot_specs; the prefill
    benchmark times the launcher. Both must be the same three kernels with the same pointer types (16-bit
    aqk, hs and vn with scratch16), constexprs and warps."""
    from deploykit.plugins.aot import recorded_launches, spec_of_launch
    from deploykit.plugins.gated_delta_net import gated_delta_rule_fwd
    from deploykit.plugins.gated_delta_net.launch import gdn_split_aot_specs

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    kw = {"dot_precision": "tf32", "block_v": 32, "num_warps": 8}
    calls, _ = recorded_launches(gated_delta_rule_fwd, _qwen_gdn_inputs(1, 100),
                                 dict(mode="split3", scratch16=scratch16, **kw))
    specs = gdn_split_aot_specs("bfloat16", 16, 32, 128, 128, 128**-0.5, 1, three=True, dot_precision="tf32",
                                block_v=32, scan_warps=8, scratch16=scratch16)
    assert len(calls) == len(specs) == 3
    for (kernel, _, args, kwargs), spec in zip(calls, specs, strict=True):
        _assert_same_spec(spec_of_launch(kernel, args, kwargs), spec, kernel)
    assert ("*bf16" if scratch16 else "*fp32") == specs[2].args["hs"] == specs[1].args["vn"] == specs[0].args["aqk"]
