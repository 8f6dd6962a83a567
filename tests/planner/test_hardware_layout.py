"""Hardware rules (issue 2, item 5) and layout search constraints (item 6)."""

import math

import pytest

from deploykit.planner.anatomy import anatomy
from deploykit.planner.gpus import gpu_profiles, precision_support
from deploykit.planner.inventory import resolve_gpu
from deploykit.planner.layout import candidate_layouts
from deploykit.planner.models import catalog, resolve_model
from deploykit.planner.plan import make_plan


def _entry(plan, model, precision):
    return next(e for e in plan.entries if e.model == model and e.precision == precision)


def test_fp8_refused_on_a100_with_the_alternative_named():
    plan = make_plan("4xA100", models=["9b"], precision="all")
    fp8 = _entry(plan, "Qwen3.5-9B", "fp8")
    assert not fp8.fits
    assert "SM >= 8.9" in fp8.reason and "SM 8.0" in fp8.reason and "int4" in fp8.reason and "bf16" in fp8.reason
    assert _entry(plan, "Qwen3.5-9B", "int4").fits and _entry(plan, "Qwen3.5-9B", "bf16").fits


@pytest.mark.parametrize("gpu", ["a100", "a10", "t4", "v100", "orin", "agx-orin-32gb", "orin-nano"])
def test_fp8_unsupported_below_sm89(gpu):
    ok, why = precision_support(resolve_gpu(gpu)[0], "fp8")
    assert not ok and "use" in why


@pytest.mark.parametrize("gpu", ["l4", "l40s", "h100", "h200", "b200", "rtx-4090", "thor", "spark"])
def test_fp8_supported_from_sm89(gpu):
    assert precision_support(resolve_gpu(gpu)[0], "fp8") == (True, None)


@pytest.mark.parametrize("gpu, ok", [("t4", False), ("v100", False), ("a100", True), ("orin", True)])
def test_int4_needs_sm80(gpu, ok):
    assert precision_support(resolve_gpu(gpu)[0], "int4")[0] is ok


def test_volta_and_amd_are_planned_with_a_not_tensorrt_note():
    plan = make_plan("1xv100,1xmi300x", models=["0.8b"], precision="bf16")
    notes = " ".join(_entry(plan, "Qwen3.5-0.8B", "bf16").notes)
    assert "Volta" in notes and "not a TensorRT target" in notes and "fp16" in notes  # V100 has no bf16 tensor cores


def test_fp8_kv_cache_refused_on_a100():
    e = _entry(make_plan("1xA100", models=["0.8b"], precision="bf16", kv_dtype="fp8"), "Qwen3.5-0.8B", "bf16")
    assert not e.fits and "fp8 KV cache" in e.reason


@pytest.mark.parametrize("spec", catalog(), ids=lambda s: s.name)
def test_tp_divides_kv_heads_and_gdn_key_heads(spec):
    t = spec.text
    layouts = candidate_layouts(anatomy(spec), resolve_gpu("h100")[0], 64)
    tps = {lay.tp for lay in layouts}
    assert tps == {d for d in range(1, 65) if t.num_key_value_heads % d == 0 and t.linear_num_key_heads % d == 0}
    if spec.is_moe:
        assert {lay.ep for lay in layouts} == {d for d in range(1, 65) if t.num_experts % d == 0}
    else:
        assert {lay.ep for lay in layouts} == {1}
    assert all(lay.gpus <= 64 for lay in layouts)


def test_tp_limits_by_model():
    # 27B: 4 KV heads, 16 GDN key heads -> tp in {1, 2, 4}; the MoE models have 2 KV heads -> tp in {1, 2}.
    h100 = resolve_gpu("h100")[0]
    assert {l.tp for l in candidate_layouts(anatomy(resolve_model("27b")), h100, 8)} == {1, 2, 4}
    assert {l.tp for l in candidate_layouts(anatomy(resolve_model("397b")), h100, 8)} == {1, 2}


def test_unified_memory_devices_run_one_gpu_per_instance():
    plan = make_plan("4xorin", models=["0.8b"], precision="int4")
    (g,) = _entry(plan, "Qwen3.5-0.8B", "int4").layout.groups
    assert (g.tp, g.ep, g.pp, g.dp) == (1, 1, 1, 4)


def test_mixed_inventory_hosts_replicas_on_several_kinds_never_one_instance_across_kinds():
    plan = make_plan("2xH100,2xL40S,1xorin", models=["4b"], precision="int4")
    e = _entry(plan, "Qwen3.5-4B", "int4")
    kinds = {g.gpu for g in e.layout.groups}
    assert kinds == {"h100_sxm", "l40s", "jetson_agx_orin_64gb"}
    counts = {"h100_sxm": 2, "l40s": 2, "jetson_agx_orin_64gb": 1}
    for g in e.layout.groups:
        assert g.gpus == g.dp * g.tp * g.ep * g.pp <= counts[g.gpu]
    assert e.layout.dp == sum(g.dp for g in e.layout.groups)
    assert e.throughput.decode_tok_s_max == pytest.approx(sum(g.decode_tok_s_max for g in e.layout.groups), abs=0.5)


def test_model_that_cannot_fit_says_why():
    e = _entry(make_plan("1xL4", models=["397b"], precision="bf16"), "Qwen3.5-397B-A17B", "bf16")
    assert not e.fits and e.throughput is None and e.max_batch == 0
    assert "GiB per GPU" in e.reason and "usable per GPU" in e.reason and "weights" in e.reason
    assert e.memory_gib.weights > e.memory_gib.capacity_per_gpu  # the waterfall of the closest attempt shows it


def test_batch_larger_than_memory_allows_says_why():
    e = _entry(make_plan("1xL4", models=["9b"], precision="int4", context="32k", batch=500), "Qwen3.5-9B", "int4")
    assert not e.fits and "--batch asked for 500" in e.reason


def test_all_gpu_profiles_load_with_sources():
    gpus = gpu_profiles()
    assert len(gpus) == 30  # every entry of ../shared/reference/gpus.yaml
    for g in gpus:
        assert g.sources and g.usable_gib > 0 and g.memory_bandwidth_tbs > 0
        assert g.bf16_tflops or g.fp16_tflops
        assert math.isfinite(g.memory_gb)


def test_every_planner_constant_names_its_source():
    from deploykit.planner.gpus import planner_constants

    doc = planner_constants()
    for family, eff in doc["efficiency"].items():
        assert eff["source"] and {"bandwidth", "compute_bf16", "compute_fp8"} <= set(eff), family
        assert all(0 < eff[k] <= 1 for k in ("bandwidth", "compute_bf16", "compute_fp8")), family
    for name, const in doc["runtime"].items():
        assert const.get("source"), name


def test_precision_comma_list():
    plan = make_plan("1xH100", models=["0.8b"], precision="int4,BF16")
    assert [e.precision for e in plan.entries] == ["int4", "bf16"]


def test_large_inventories_use_wide_expert_parallelism():
    plan = make_plan("64xH100", models=["397b"], precision="bf16")  # 807 GB of bf16 weights: needs > 8 GPUs
    e = plan.entries[0]
    assert e.fits and e.layout.ep > 1 and e.layout.gpus <= 64


@pytest.mark.parametrize("gpus, model, precision, batch", [
    ("4xrtx4090", "35b-a3b", "int4", 50), ("8xH100", "397b", "fp8", 100), ("4xA100", "27b", "bf16", 150),
])
def test_a_layout_that_holds_the_batch_is_chosen_when_one_exists(gpus, model, precision, batch):
    """The fastest layout at its own largest batch may hold fewer sequences than --batch; another may hold them."""
    from deploykit.planner.anatomy import anatomy
    from deploykit.planner.inventory import parse_inventory
    from deploykit.planner.layout import _evaluate, candidate_layouts
    from deploykit.planner.memory import Options
    from deploykit.planner.models import resolve_model

    (item,) = parse_inventory(gpus)
    anat, opts = anatomy(resolve_model(model)), Options(context=32768, batch=batch)
    held = max(_evaluate(anat, item.gpu, item.count, precision, opts, lay, batch).sequences
               for lay in candidate_layouts(anat, item.gpu, item.count))
    (entry,) = make_plan(gpus, models=[model], precision=precision, batch=batch).entries
    assert entry.fits == (held >= batch)
    assert entry.max_batch >= min(held, batch)
