"""Memory model: each term against hand formulas, monotonicity in context and batch."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deploykit.planner.anatomy import anatomy
from deploykit.planner.models import resolve_model
from deploykit.planner.plan import make_plan

GIB = 2**30


def _one(gpus, model, precision, **kw):
    (e,) = make_plan(gpus, models=[model], precision=precision, **kw).entries
    return e


def test_bf16_weights_are_two_bytes_per_parameter_on_one_gpu():
    e = _one("1xH200", "9b", "bf16")
    assert e.memory_gib.weights == round(2 * 9_653_104_368 / GIB, 2)  # qwen35.md total (text + MTP + vision)
    e = _one("1xH200", "9b", "bf16", text_only=True, mtp=False)
    assert e.memory_gib.weights == round(2 * 8_953_803_264 / GIB, 2)  # text only


def test_kv_and_state_terms_equal_hand_formulas():
    ctx, batch = 16384, 3
    e = _one("1xH200", "27b", "bf16", context=ctx, batch=batch)
    kv = batch * ctx * (16 + 1) * 2 * 4 * 256 * 2  # (16 full-attention layers + MTP) x K,V x 4 heads x 256 x bf16
    state = batch * 48 * (48 * 128 * 128 * 4 + (2 * 16 * 128 + 48 * 128) * 3 * 2)  # 48 GDN layers, fp32 state + bf16 conv
    assert e.memory_gib.kv_cache == round(kv / GIB, 2)
    assert e.memory_gib.linear_state == round(state / GIB, 2)
    fp8 = _one("1xH200", "27b", "bf16", context=ctx, batch=batch, kv_dtype="fp8", state_dtype="bf16")
    assert fp8.memory_gib.kv_cache == round(kv / 2 / GIB, 2)
    assert fp8.memory_gib.linear_state == round(batch * 48 * (48 * 128 * 128 * 2 + (2 * 16 * 128 + 48 * 128) * 3 * 2) / GIB, 2)


def test_capacity_and_overhead_constants():
    a100 = _one("1xA100", "0.8b", "bf16")
    assert a100.memory_gib.capacity_per_gpu == round(79.15 * 0.90, 2)  # gpus.yaml usable_gib x default cap
    assert a100.memory_gib.overhead == round(0.52 + 3.26, 2)  # CUDA context + runtime workspace (_planner.yaml)
    orin = _one("1xorin", "0.8b", "bf16")
    assert orin.memory_gib.capacity_per_gpu == round((61.37 - 1.5) * 0.90, 2)  # OS reserve on unified memory
    assert _one("1xorin", "0.8b", "bf16", os_reserve_gib=8).memory_gib.capacity_per_gpu == round((61.37 - 8) * 0.9, 2)
    assert _one("1xA100", "0.8b", "bf16", mem_util=0.5).memory_gib.capacity_per_gpu == round(79.15 * 0.5, 2)


def test_tensor_parallel_halves_the_sharded_weights():
    one = _one("1xH200", "27b", "bf16")
    a = anatomy(resolve_model("27b"))
    from deploykit.planner.inventory import resolve_gpu
    from deploykit.planner.layout import (
        _evaluate,  # the chosen layout on 2 GPUs may be dp2; evaluate tp2 directly
    )
    from deploykit.planner.memory import Layout, Options

    kp = _evaluate(a, resolve_gpu("h200")[0], 2, "bf16", Options(), Layout(tp=2), 1)
    full = a.weight_bytes("bf16")
    assert one.memory_gib.weights == round(full / GIB, 2)
    assert full / 2 < kp.memory["weights"] < full / 2 * 1.01  # norms and q/k norms stay replicated


def test_fp8_and_int4_checkpoints_are_smaller_in_the_expected_ratio():
    for name in ("9b", "397b"):
        a = anatomy(resolve_model(name))
        bf16, fp8, int4 = (a.weight_bytes(p) for p in ("bf16", "fp8", "int4"))
        assert 0.5 < fp8 / bf16 < 0.7 and 0.25 < int4 / bf16 < 0.5


@settings(max_examples=40, deadline=None)
@given(
    model=st.sampled_from(["0.8b", "4b", "27b", "35b-a3b"]),
    precision=st.sampled_from(["bf16", "fp8", "int4"]),
    ctx=st.integers(256, 65536),
    extra_ctx=st.integers(1, 65536),
    batch=st.integers(1, 8),
    extra_batch=st.integers(1, 8),
)
def test_memory_grows_with_context_and_batch(model, precision, ctx, extra_ctx, batch, extra_batch):
    def total(c, b):
        e = _one("1xB200", model, precision, context=c, batch=b)
        m = e.memory_gib
        return m.weights + m.kv_cache + m.linear_state + m.activations + m.overhead, e

    base, e0 = total(ctx, batch)
    longer, e1 = total(ctx + extra_ctx, batch)
    wider, e2 = total(ctx, batch + extra_batch)
    assert longer >= base and wider >= base
    assert e1.memory_gib.kv_cache >= e0.memory_gib.kv_cache and e2.memory_gib.linear_state >= e0.memory_gib.linear_state
    assert e1.max_batch <= e0.max_batch  # longer sequences: fewer of them fit


def test_prefill_peak_of_9b_matches_the_h100_baseline():
    # h100-baseline.md: Qwen3.5-9B text-only bf16, 4096-token prefill with flash-linear-attention: peak 18.53 GB
    # allocated (weights 17.91 GB). The planner's weights + KV + state + activations at that shape, without the
    # runtime overhead (CUDA context and workspaces are not in torch's allocated figure):
    e = _one("1xH100", "9b", "bf16", context=4096, text_only=True, mtp=False)
    m = e.memory_gib
    planned_gb = (m.weights + m.kv_cache + m.linear_state + m.activations) * GIB / 1e9
    assert planned_gb == pytest.approx(18.53, rel=0.02)


def test_published_checkpoint_sizes():
    # anchors.md appendix A: Qwen3.5-35B-A3B ~70 GB in BF16 (DGX Spark guide); Qwen3.5-27B FP8 ~29 GB (B200 study).
    assert anatomy(resolve_model("35b-a3b")).weight_bytes("bf16") / 1e9 == pytest.approx(70, rel=0.05)
    assert anatomy(resolve_model("27b")).weight_bytes("fp8", vision=False) / 1e9 == pytest.approx(29, rel=0.05)


@pytest.mark.parametrize("name, touched_mb", [("35b-a3b", 58), ("122b-a10b", 171), ("397b-a17b", 281)])
def test_one_token_moe_block_bytes_match_the_h100_baseline(name, touched_mb):
    # h100-baseline.md MoE table, 1 token: top-k experts + shared expert + router, bf16.
    spec = resolve_model(name)
    t, a = spec.text, anatomy(resolve_model(name))
    per_expert = a.layers[0].weights.nbytes["bf16"]["exp"] / t.num_experts
    shared_and_router = 2 * (3 * t.hidden_size * t.shared_expert_intermediate_size + t.num_experts * t.hidden_size)
    assert (t.num_experts_per_tok * per_expert + shared_and_router) / 1e6 == pytest.approx(touched_mb, rel=0.01)


def test_fitting_entries_stay_under_capacity_and_max_batch_is_tight():
    from deploykit.planner.inventory import resolve_gpu
    from deploykit.planner.memory import (
        Layout,
        Options,
        breakdown,
        capacity_bytes,
        max_batch_per_rank,
        stages,
    )

    plan = make_plan("2xH100,1xL4,1xorin", context="16k")
    assert any(e.fits for e in plan.entries)
    for e in plan.entries:
        if e.fits:
            assert e.memory_gib.total_per_gpu <= e.memory_gib.capacity_per_gpu
    # One GPU, one layout: max_batch sequences fit under the cap, one more does not.
    for name, precision in (("4b", "bf16"), ("9b", "int4"), ("0.8b", "fp8")):
        a, gpu, opts = anatomy(resolve_model(name)), resolve_gpu("l4")[0], Options(context=16384)
        sts = stages(a, precision, Layout(), opts, gpu)
        cap = capacity_bytes(gpu, opts)
        n = max_batch_per_rank(sts, cap, opts.context)
        assert n >= 1
        assert breakdown(sts, n, opts.context)["total_per_gpu"] <= cap < breakdown(sts, n + 1, opts.context)["total_per_gpu"]


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 10**6), unit=st.sampled_from(["", "k", "K", "m", "M"]))
def test_context_parsing(n, unit):
    from deploykit.planner.plan import parse_context

    assert parse_context(f"{n}{unit}") == n * {"": 1, "k": 1024, "m": 1024**2}[unit.lower()]
