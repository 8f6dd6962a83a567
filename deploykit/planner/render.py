"""Render plans, the model catalog and the GPU list as a table, JSON or YAML; atomic file output."""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
from pathlib import Path

import yaml
from pydantic import BaseModel

from deploykit.errors import DeployKitError
from deploykit.planner.schema import Plan, PlanEntry

FORMATS = ("table", "json", "yaml")


def _console_text(renderables) -> str:
    from rich.console import Console

    width = int(os.environ.get("COLUMNS", "0") or 0) or (200 if not sys.stdout.isatty() else None)
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, highlight=False, soft_wrap=False)
    for r in renderables:
        console.print(r)
    return buf.getvalue()


def _table(title: str, columns: list[str], rows: list[list[str]]):
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=False)
    for i, c in enumerate(columns):
        table.add_column(c, justify="left" if i < 4 else "right", overflow="fold")
    for r in rows:
        table.add_row(*r)
    return table


def _num(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def layout_text(e: PlanEntry, short: dict[str, str]) -> str:
    if not e.layout or not e.layout.groups:
        return "-"
    parts = []
    for g in e.layout.groups:
        shape = f"tp{g.tp}" + (f" ep{g.ep}" if g.ep > 1 else "") + (f" pp{g.pp}" if g.pp > 1 else "")
        parts.append(f"{g.dp}x({shape}) {short.get(g.gpu, g.gpu)}")
    return " + ".join(parts)


def plan_table(plan: Plan) -> str:
    from deploykit.planner.gpus import gpu_profiles

    short = {g.id: g.short for g in gpu_profiles()}
    inv = ", ".join(f"{i.count}x {short.get(i.gpu, i.gpu)}" for i in plan.inventory)
    req = plan.request
    title = (f"deploykit plan: {inv} | context {req.context} | batch {req.batch} | kv {req.kv_dtype} | "
             f"state {req.state_dtype} | {'text+vision' if req.vision else 'text only'}{' + MTP' if req.mtp else ''}")
    cols = ["model", "prec", "fits", "layout / why not", "GiB/GPU", "max seqs", "decode b1 tok/s", "decode max tok/s",
            "prefill tok/s", "TTFT ms"]
    rows = []
    for e in plan.entries:
        t = e.throughput
        mem = e.memory_gib
        why = (e.reason or "").split(" | ")
        why_text = why[0] + (f" (+{len(why) - 1} more kinds, see --format json)" if len(why) > 1 else "")
        rows.append([
            e.model, e.precision, "yes" if e.fits else "no", layout_text(e, short) if e.fits else why_text,
            f"{mem.total_per_gpu:.1f}/{mem.capacity_per_gpu:.1f}" if mem and e.fits else "-",
            str(e.max_batch) if e.fits else "-", _num(t and t.decode_tok_s_b1), _num(t and t.decode_tok_s_max),
            _num(t and t.prefill_tok_s), _num(t and t.ttft_ms),
        ])
    hardware = dict.fromkeys(n for e in plan.entries for n in e.notes if not n.startswith("not on every GPU kind"))
    lines = [f"note: {n}" for n in [*plan.notes, *hardware]]
    lines.append("throughput is a roofline estimate with named efficiency factors (docs/planner.md), not a measurement")
    lines.append(f"recommendation: {plan.recommendation or 'nothing fits this inventory; see the reasons above'}")
    return _console_text([_table(title, cols, rows)]) + "\n".join(lines) + "\n"


def explain_text(plan: Plan, model: str) -> str:
    """Memory waterfall of the chosen layout of every entry of one model (a planned name, alias or path)."""
    from deploykit.planner.gpus import efficiency, gpu_profiles
    from deploykit.planner.models import resolve_model

    planned = {e.model.lower(): e.model for e in plan.entries}
    model_name = planned.get(model.lower()) or resolve_model(model).name
    profiles = {g.id: g for g in gpu_profiles()}
    entries = [e for e in plan.entries if e.model == model_name]
    out = []
    for e in entries:
        if not e.memory_gib or not e.layout:
            out.append(f"{e.model} {e.precision}: no layout tried ({e.reason})\n")
            continue
        m, lay = e.memory_gib, e.layout
        gpu = profiles[lay.gpu]
        head = f"{e.model} {e.precision} on {gpu.short}: tp{lay.tp} ep{lay.ep} pp{lay.pp}"
        out.append(head + (f", {lay.dp} replica(s) in total" if e.fits else f" (closest attempt; {e.reason})"))
        for i, key in enumerate(("weights", "kv_cache", "linear_state", "activations", "overhead")):
            out.append(f"  {'+' if i else ' '} {key:<14}{getattr(m, key):>10.2f} GiB")
        out.append(f"  = {'total_per_gpu':<14}{m.total_per_gpu:>10.2f} GiB of {m.capacity_per_gpu:.2f} GiB usable "
                   f"({gpu.usable_gib} GiB x mem-util {plan.request.mem_util})")
        eff = efficiency(gpu)
        out.append(f"  max {e.max_batch} sequences of {e.context} tokens; efficiency: bandwidth {eff['bandwidth']:.2f}, "
                   f"bf16 {eff['compute_bf16']:.2f}, fp8 {eff['compute_fp8']:.2f} ({eff['source']})")
        out.extend(f"  note: {n}" for n in e.notes)
        out.append("")
    if not entries:
        raise DeployKitError(f"--explain '{model}' is not among the planned models", "add it with --model")
    return "\n".join(out)


def dump(obj: BaseModel | list, fmt: str) -> str:
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, width=120)
    raise DeployKitError(f"unknown --format '{fmt}'", f"use one of {', '.join(FORMATS)}")


def write_atomic(path: str | Path, text: str) -> None:
    """Write via a temp file in the same folder and rename, so a failure leaves no partial file."""
    path = Path(path)
    if path.is_dir():
        raise DeployKitError(f"-o '{path}' is a folder", "give a file name, e.g. -o plan.json")
    if not path.parent.exists():
        raise DeployKitError(f"folder '{path.parent}' does not exist", "create it or choose another -o path")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def models_table(rows: list[dict]) -> str:
    cols = ["model", "aliases", "text", "MTP", "vision", "total", "active", "bf16 GB", "fp8 GB", "int4 GB",
            "KV B/token", "GDN state MiB/seq"]
    body = []
    for r in rows:
        p, c = r["params"], r["checkpoint_bytes"]
        body.append([
            r["name"], ", ".join(r["aliases"]), *(f"{p[k] / 1e9:.3f}B" for k in ("text", "mtp", "vision", "total", "active")),
            *(f"{c[k] / 1e9:.2f}" for k in ("bf16", "fp8", "int4")), f"{r['kv_bytes_per_token']['bf16']:,}",
            f"{(r['linear_state_bytes_per_seq']['recurrent_fp32'] + r['linear_state_bytes_per_seq']['conv_bf16']) / 2**20:.1f}",
        ])
    return _console_text([_table("Qwen3.5 catalog (params: text excludes MTP and vision; checkpoint = text+MTP+vision)",
                                 cols, body)])


def gpus_table(rows: list[dict]) -> str:
    cols = ["id", "name", "aliases", "usable GiB", "TB/s", "bf16 TF", "fp8 TF", "SM", "TensorRT", "fp8", "int4"]
    body = [[r["id"], r["name"], ", ".join(r["aliases"]), f"{r['usable_gib']}", f"{r['memory_bandwidth_tbs']}",
             _num(r["bf16_tflops"], 1), _num(r["fp8_tflops"], 1), r["sm"], "yes" if r["tensorrt_supported"] else "no",
             "yes" if r["fp8_supported"] else "no", "yes" if r["int4_supported"] else "no"] for r in rows]
    return _console_text([_table("GPU profiles (dense peak rates; defaults for ambiguous aliases in profiles/gpus/_conventions.yaml)",
                                 cols, body)])
