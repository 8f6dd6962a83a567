"""`make_plan`: which Qwen3.5 checkpoints fit an inventory, at which precision and layout, and how fast."""

from __future__ import annotations

import re

from deploykit.errors import DeployKitError
from deploykit.planner.anatomy import PRECISIONS, anatomy
from deploykit.planner.gpus import gpu_profiles, hardware_notes, kv_support, precision_support, runtime
from deploykit.planner.inventory import InventoryItem, parse_inventory
from deploykit.planner.layout import KindPlan, best_layout
from deploykit.planner.memory import GIB, Options
from deploykit.planner.models import ModelSpec, catalog, resolve_model
from deploykit.planner.schema import (
    InventoryEntry,
    LayoutGroup,
    MemoryGiB,
    Plan,
    PlanEntry,
    PlanLayout,
    PlanRequest,
    Throughput,
)

KV_DTYPES = ("bf16", "fp8")
STATE_DTYPES = ("fp32", "bf16", "fp16")
QUALITY_ORDER = ("bf16", "fp8", "int4")  # recommendation prefers the least lossy precision that fits


def parse_context(value: str | int) -> int:
    """'32k' -> 32768, '1m' -> 1048576, '4096' -> 4096 (k = 1024, as context lengths are quoted)."""
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([kKmM]?)\s*", str(value))
    if not m:
        raise DeployKitError(f"--context '{value}' is not a token count", "e.g. --context 32k or --context 8192")
    n = float(m[1]) * {"": 1, "k": 1024, "m": 1024**2}[m[2].lower()]
    if n < 1 or n != int(n):
        raise DeployKitError(f"--context must be a positive whole number of tokens, got '{value}'", "e.g. --context 32k")
    return int(n)


def _check_options(precisions, batch, kv_dtype, state_dtype, mem_util):
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise DeployKitError(f"unknown precision '{bad[0]}'", f"use one of {', '.join(PRECISIONS)} or all")
    if batch < 1:
        raise DeployKitError(f"--batch must be at least 1, got {batch}", "e.g. --batch 8")
    if kv_dtype not in KV_DTYPES:
        raise DeployKitError(f"unknown --kv-dtype '{kv_dtype}'", f"use {' or '.join(KV_DTYPES)}")
    if state_dtype not in STATE_DTYPES:
        raise DeployKitError(f"unknown --state-dtype '{state_dtype}'", f"use one of {', '.join(STATE_DTYPES)}")
    if not 0 < mem_util <= 1:
        raise DeployKitError(f"--mem-util must be in (0, 1], got {mem_util}", "e.g. --mem-util 0.9")


def _kind_plans(spec, precision, items, opts, notes) -> tuple[list[KindPlan], list[str]]:
    """Best layout per GPU kind; reasons for kinds that cannot host the model."""
    anat = anatomy(spec)
    plans, reasons = [], []
    for item in items:
        ok, why = precision_support(item.gpu, precision)
        if ok:
            ok, why = kv_support(item.gpu, opts.kv_dtype)
        if not ok:
            reasons.append(why)
            continue
        if opts.context > spec.text.max_position_embeddings:
            reasons.append(f"context {opts.context} exceeds max_position_embeddings {spec.text.max_position_embeddings}")
            continue
        kp = best_layout(anat, item.gpu, item.count, precision, opts, opts.batch)
        if kp.fits:
            plans.append(kp)
            notes.extend(n for n in hardware_notes(item.gpu) if n not in notes)
        else:
            reasons.append(kp.reason)
            plans.append(kp)
    return plans, reasons


def _gib(x: float) -> float:
    return round(x / GIB, 2)


def _entry(spec: ModelSpec, precision: str, items, opts: Options) -> PlanEntry:
    notes: list[str] = []
    plans, reasons = _kind_plans(spec, precision, items, opts, notes)
    fitting = sorted((p for p in plans if p.fits), key=lambda p: -p.aggregate_decode)
    shown = fitting[0] if fitting else (plans[0] if plans else None)
    total_batch = sum(p.dp * p.max_batch_instance for p in fitting)
    reason = None
    if not fitting:
        reason = " | ".join(dict.fromkeys(reasons)) or "no GPU in the inventory"
    elif total_batch < opts.batch:
        reason = f"holds at most {total_batch} sequences at {opts.context} tokens, --batch asked for {opts.batch}"
    elif reasons:
        notes.extend(f"not on every GPU kind: {r}" for r in dict.fromkeys(reasons))
    layout = memory = throughput = None
    if shown is not None:
        lay = shown.layout
        groups = [
            LayoutGroup(gpu=p.gpu.id, tp=p.layout.tp, ep=p.layout.ep, pp=p.layout.pp, dp=p.dp, gpus=p.dp * p.layout.gpus,
                        max_batch=p.dp * p.max_batch_instance, decode_tok_s_max=round(p.aggregate_decode, 1))
            for p in fitting
        ]
        layout = PlanLayout(
            tp=lay.tp, ep=lay.ep, pp=lay.pp, dp=sum(g.dp for g in groups), gpu=shown.gpu.id,
            gpus=sum(g.gpus for g in groups) if groups else lay.gpus, groups=groups,
        )
        memory = MemoryGiB(**{k: _gib(v) for k, v in shown.memory.items()}, capacity_per_gpu=_gib(shown.capacity))
    if fitting:
        perf = shown.perf
        throughput = Throughput(
            decode_tok_s_b1=round(perf.decode_tok_s_b1, 1),
            decode_tok_s_max=round(sum(p.aggregate_decode for p in fitting), 1),
            prefill_tok_s=round(sum(p.dp * p.perf.prefill_tok_s for p in fitting), 1),
            ttft_ms=round(perf.ttft_ms, 1),
        )
    return PlanEntry(
        model=spec.name, precision=precision, fits=reason is None, reason=reason, layout=layout, memory_gib=memory,
        max_batch=total_batch, context=opts.context, throughput=throughput, notes=notes,
    )


def _recommend(entries: list[PlanEntry], specs: list[ModelSpec]) -> str | None:
    size = {s.name: anatomy(s).params_total for s in specs}
    ok = [e for e in entries if e.fits]
    if not ok:
        return None
    top = max(size[e.model] for e in ok)
    best = min((e for e in ok if size[e.model] == top), key=lambda e: QUALITY_ORDER.index(e.precision))
    short = {g.id: g.short for g in gpu_profiles()}
    groups = " + ".join(
        f"{g.dp}x tp{g.tp}" + (f" ep{g.ep}" if g.ep > 1 else "") + (f" pp{g.pp}" if g.pp > 1 else "") + f" on {short[g.gpu]}"
        for g in best.layout.groups
    )
    return (
        f"{best.model} {best.precision} ({groups}; {best.layout.gpus} GPUs): the largest model that fits, in its least lossy "
        f"precision; up to {best.max_batch} sequences of {best.context} tokens, "
        f"~{best.throughput.decode_tok_s_max:,.0f} tok/s decode in aggregate"
    )


def make_plan(
    gpus: str | list[InventoryItem],
    models: list[str] | None = None,
    precision: str | list[str] = "all",  # "all", one name, "bf16,int4" or a list
    context: str | int = "32k",
    batch: int = 1,
    kv_dtype: str = "bf16",
    state_dtype: str = "fp32",
    text_only: bool = False,
    mtp: bool = True,
    mem_util: float | None = None,
    os_reserve_gib: float | None = None,
) -> Plan:
    """Plan every requested model x precision on the inventory. Bad input raises DeployKitError."""
    items = parse_inventory(gpus) if isinstance(gpus, str) else list(gpus)
    if isinstance(precision, str):
        precision = [p.strip().lower() for p in precision.split(",") if p.strip()]
    precisions = list(PRECISIONS) if precision in ([], ["all"]) else list(dict.fromkeys(precision))
    mem_util = runtime("memory_utilization") if mem_util is None else mem_util
    kv_dtype, state_dtype = kv_dtype.lower(), state_dtype.lower()
    _check_options(precisions, batch, kv_dtype, state_dtype, mem_util)
    if os_reserve_gib is not None and os_reserve_gib < 0:
        raise DeployKitError(f"--os-reserve-gib must be >= 0, got {os_reserve_gib}", "e.g. --os-reserve-gib 1.5")
    for item in items if os_reserve_gib is not None else ():
        if item.gpu.unified_memory and os_reserve_gib >= item.gpu.usable_gib:
            raise DeployKitError(f"--os-reserve-gib {os_reserve_gib} leaves nothing of the {item.gpu.usable_gib} GiB "
                                 f"of {item.gpu.short}", "reserve less than the device's memory")
    specs = list({(s.name, s.source): s for s in map(resolve_model, models)}.values()) if models else list(catalog())
    opts = Options(parse_context(context), batch, kv_dtype, state_dtype, not text_only, mtp, mem_util, os_reserve_gib)
    entries = [_entry(spec, p, items, opts) for spec in specs for p in precisions]
    notes = [i.default_note for i in items if i.default_note]
    return Plan(
        inventory=[InventoryEntry(gpu=i.gpu.id, name=i.gpu.name, count=i.count, spelled=i.spelled) for i in items],
        request=PlanRequest(context=opts.context, batch=batch, precisions=precisions, kv_dtype=kv_dtype,
                            state_dtype=state_dtype, vision=opts.vision, mtp=mtp, mem_util=mem_util),
        entries=entries, recommendation=_recommend(entries, specs), notes=notes,
    )


def list_models() -> list[dict]:
    """`deploykit models`: derived sizes of every catalog checkpoint."""
    rows = []
    for spec in catalog():
        a = anatomy(spec)
        rows.append({
            "name": spec.name, "hf_repo": spec.hf_repo, "aliases": spec.aliases,
            "params": {"text": a.params_text, "mtp": a.params_mtp, "vision": a.params_vision,
                       "total": a.params_total, "active": a.params_active},
            "checkpoint_bytes": {p: round(a.weight_bytes(p)) for p in PRECISIONS},
            "kv_bytes_per_token": {d: a.kv_bytes_per_token(d) for d in KV_DTYPES},
            "linear_state_bytes_per_seq": {"recurrent_fp32": a.recurrent_state_bytes("fp32"),
                                           "conv_bf16": a.conv_state_bytes()},
            "layers": {"full_attention": a.n_full, "linear_attention": a.n_linear},
            "published_total_params": spec.published_total_params,
        })
    return rows


def list_gpus() -> list[dict]:
    """`deploykit gpus`: the profiles with their hardware rules applied."""
    from deploykit.planner.gpus import gpu_profiles

    keys = ("id", "name", "family", "aliases", "vendor", "memory_gb", "usable_gib", "memory_bandwidth_tbs",
            "bf16_tflops", "fp16_tflops", "fp8_tflops", "sm", "nvlink_gbs", "unified_memory", "tensorrt_supported")
    return [
        {**{k: getattr(g, k) for k in keys}, "fp8_supported": precision_support(g, "fp8")[0],
         "int4_supported": precision_support(g, "int4")[0]}
        for g in gpu_profiles()
    ]
