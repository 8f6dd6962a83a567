"""The ahead-of-time kernels on the GPU: each case compiles, exactly as a TensorRT AOT plugin does
(deploykit.plugins.aot.compile_kernel: ASTSource, the alignment marks, the launcher's constexprs), the kernel
that the op's launcher launches, runs that compiled kernel with the launcher's grid and arguments into
NaN-filled outputs, and compares it with the launcher's own JIT run. It also times both.

What this adds to bench_gdn.py / bench_moe.py, which time the JIT kernels: the AOT specialisations differ
(declared alignment, no integer specialisation), and they are what an engine runs. Not covered: TensorRT's
own launch of the PTX (no TensorRT on the GPU machine); tests/builder/test_qdp.py checks that each QDP plugin
launches what its launcher launches, so these cases stand for the plugins.

    python bench/bench_aot.py [--only NAME,...]          # on a GPU
    BENCH_DEVICE=cpu TRITON_INTERPRET=1 python bench/bench_aot.py --smoke   # the harness, tiny shapes: the
        # recorded call is replayed through the interpreter instead of a compiled kernel
"""

from __future__ import annotations

import math
import sys

import torch

from _kernel_bench import DEV, SMOKE, device_line, emit, import_plugins, timings

import_plugins()
import bench_gdn as gdn  # noqa: E402  (shapes and inputs of the GDN benchmark)
import bench_moe as moe  # noqa: E402
from deploykit.plugins import launcher  # noqa: E402
from deploykit.plugins.aot import compile_kernel, device_arch, recorded_launch, spec_of_launch  # noqa: E402
from deploykit.plugins.gated_delta_net.launch import CHUNK16  # noqa: E402

MATCH = 2**-7  # max |AOT - JIT| over max |JIT|, per output: one bf16 ulp of the largest value
TACTIC4 = dict(mode="chunk", dot_precision="tf32", **CHUNK16)  # QDP GDN tactic 4


def _gdn(B, T, tactic):
    heads = (1, 2) if SMOKE else (16, 32)  # key, value heads (4B/9B/35B-A3B: 16/32)
    return launcher("GatedDeltaRule"), (*gdn.inputs(B, T, *heads), gdn.K**-0.5, 1), tactic


def _gdn_stage(stage, T):
    """One GatedDeltaRule stage op at batch 1 x `T` tokens, as the QDP plugins compile it (tf32 dots, the state
    scan's batch-1 tile of 32 columns), its inputs made by the stages before it (JIT)."""
    heads = (1, 2) if SMOKE else (16, 32)
    q, k, v, g, beta, h0 = gdn.inputs(1, T, *heads)
    scale, tf32 = gdn.K**-0.5, dict(dot_precision="tf32")
    if stage == "GatedDeltaPrep":
        return launcher(stage), (q, k, v, g, beta, scale, 1), tf32
    w, u, aqk, gcs = launcher("GatedDeltaPrep")(q, k, v, g, beta, scale, 1, **tf32)
    if stage == "GatedDeltaStates":
        return launcher(stage), (k, w, u, gcs, h0, 1), dict(tf32, block_v=32 if not SMOKE else None)
    hs, vn, _ = launcher("GatedDeltaStates")(k, w, u, gcs, h0, 1, **tf32)
    return launcher(stage), (q, hs, vn, aqk, gcs, scale, 1), tf32


def _conv(B, C, T):
    x = torch.randn(B, C, T, device=DEV, dtype=torch.bfloat16)
    state = torch.randn(B, C, 3, device=DEV, dtype=torch.bfloat16)
    w = torch.randn(C, 4, device=DEV, dtype=torch.bfloat16) * 0.5
    return launcher("CausalConv1d"), (x, state, w, "silu"), {}


def _moe(stage, tokens):
    """One MoE stage op of the 35B-A3B at `tokens`, its inputs made by the stages before it (JIT)."""
    x, logits, gate_up, down, k = moe.make("35b-a3b", tokens)
    if stage == "MoEPairGateUp":
        return launcher(stage), (x, logits, gate_up, k, 1), {}
    if stage == "MoEPairDown":
        inter, ids, w = launcher("MoEPairGateUp")(x, logits, gate_up, k, 1)
        return launcher(stage), (inter, down, ids, w), {}
    ids, w = launcher("MoERoute")(logits, k, 1)
    if stage == "MoERoute":
        return launcher(stage), (logits, k, 1), {}
    slots, blocks = launcher("MoEAlign")(logits, ids, 16)
    if stage == "MoEAlign":
        return launcher(stage), (logits, ids, 16), {}
    inter = launcher("MoEGateUp")(x, gate_up, slots, blocks, k, 16)
    if stage == "MoEGateUp":  # padding slots (slot_pair = N * K) are unspecified: compare the others
        return launcher(stage), (x, gate_up, slots, blocks, k, 16), {}, [slots < ids.numel()]
    return launcher(stage), (inter, down, slots, blocks, w, 16), {}


S = 1 if SMOKE else 0  # smoke: tiny shapes (bench_gdn / bench_moe shrink their dims themselves)
CASES = {  # name -> () -> (launcher, args, launcher keywords[, row mask of each output where it is specified])
    "gdn_decode_64x32": lambda: _gdn(4 if S else 64, 1, dict(mode="recurrent")),
    "gdn_prefill_8192_tactic2": lambda: _gdn(1, 20 if S else 8192, dict(mode="chunk", dot_precision="tf32")),
    "gdn_prefill_8192_tactic4": lambda: _gdn(1, 20 if S else 8192, TACTIC4),
    "moe_pair_gate_up_1": lambda: _moe("MoEPairGateUp", 1),
    "moe_pair_down_1": lambda: _moe("MoEPairDown", 1),
    "moe_route_64": lambda: _moe("MoERoute", 8 if S else 64),
    "moe_align_64": lambda: _moe("MoEAlign", 8 if S else 64),
    "moe_gate_up_64": lambda: _moe("MoEGateUp", 8 if S else 64),
    "moe_down_64": lambda: _moe("MoEDown", 8 if S else 64),
    "gdn_prep_8192": lambda: _gdn_stage("GatedDeltaPrep", 20 if S else 8192),  # --gdn-stages' three plugins
    "gdn_states_8192": lambda: _gdn_stage("GatedDeltaStates", 20 if S else 8192),
    "gdn_out_8192": lambda: _gdn_stage("GatedDeltaOut", 20 if S else 8192),
    "conv_decode_64": lambda: _conv(4 if S else 64, 48 if S else 8192, 1),
    "conv_prefill_8192": lambda: _conv(1, 48 if S else 8192, 70 if S else 8191),  # T % 16 != 0
}


def _flat(outs) -> list:
    return list(outs) if isinstance(outs, tuple | list) else [outs]


def aot_runner(call):
    """The launch an AOT plugin makes: the compiled specialisation, the launcher's grid and arguments."""
    kernel, grid, args, kwargs = call
    spec = spec_of_launch(kernel, args, kwargs)
    if DEV != "cuda":  # smoke: no GPU to compile for; replay the same call through the interpreter
        return spec, lambda: kernel[grid](*args, **spec.constexprs, num_warps=spec.num_warps)
    compiled = compile_kernel(spec, device_arch())
    return spec, lambda: compiled[grid](*args, *spec.constexprs.values())


def worst_difference(jit: list, aot: list, rows: list | None = None) -> float:
    """max over outputs of max |aot - jit| / max |jit| (inf where an output was left unwritten or differs in an
    integer element), over the rows `rows` marks where the contract specifies them."""
    worst = 0.0
    for i, (j, a) in enumerate(zip(jit, aot, strict=True)):
        if rows and i < len(rows):
            j, a = j[rows[i]], a[rows[i]]
        if not j.dtype.is_floating_point:
            worst = max(worst, 0.0 if torch.equal(j, a) else math.inf)
            continue
        d = (a.float() - j.float()).abs().max().item() if a.numel() else 0.0
        scale = j.float().abs().max().item() if j.numel() else 1.0
        worst = max(worst, math.inf if math.isnan(d) else d / (scale or 1.0))
    return worst


def case(name: str) -> dict:
    fn, args, kwargs, *rows = CASES[name]()
    jit = [t.clone() for t in _flat(fn(*args, **kwargs))]
    call, outs = recorded_launch(fn, args, kwargs)
    for t in outs:  # anything the AOT kernel does not write stays NaN (or -1) and fails the comparison
        t.fill_(math.nan if t.dtype.is_floating_point else -1)
    spec, run = aot_runner(call)
    run()
    if DEV == "cuda":
        torch.cuda.synchronize()
    diff = worst_difference(jit, outs, rows[0] if rows else None)
    if SMOKE:  # the interpreter's timings mean nothing, and each costs a whole run
        t_aot = t_jit = None
    else:
        t_aot = timings(run, graph=False)["throughput_ms"]
        t_jit = timings(lambda: fn(*args, **kwargs), graph=False)["throughput_ms"]
    return {"aot": name, "kernel": call[0].__name__, "grid": list(call[1]), "num_warps": spec.num_warps,
            "max_diff_rel": float(f"{diff:.3g}"), "match": diff <= MATCH, "aot_ms": t_aot, "jit_ms": t_jit,
            "aot_over_jit": round(t_aot / t_jit, 3) if t_jit and t_aot else None}


def compile_only(name: str) -> None:
    """Fills Triton's cache with one case's AOT specialisation (bench/precompile.py runs these in parallel)."""
    fn, args, kwargs, *_ = CASES[name]()
    aot_runner(recorded_launch(fn, args, kwargs)[0])


def main() -> None:
    only = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else list(CASES)
    emit(device_line())
    for name in only:
        try:
            emit(case(name))
        except Exception as exc:  # noqa: BLE001  one failing case must not hide the others
            emit({"aot": name, "error": repr(exc)[:300]})


if __name__ == "__main__":
    main()
