"""Inventory syntax: `4xA100`, `2xH100-80GB,1xL40S`, `orin-agx-64`, `8*h200` (count defaults to 1, case-insensitive)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from deploykit.errors import DeployKitError
from deploykit.planner.gpus import GpuProfile, alias_defaults, gpu_profiles

MAX_COUNT = 100_000  # sanity bound: larger than any single cluster today (the largest are ~1e5 GPUs)
_ITEM = re.compile(r"^\s*(?:(?P<count>[+-]?\d+)\s*[x*]\s*)?(?P<name>.+?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class InventoryItem:
    gpu: GpuProfile
    count: int
    spelled: str
    default_note: str | None  # set when an ambiguous alias resolved to the documented default


def _norm(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower()).removeprefix("nvidia-")


def _alias_table() -> dict[str, GpuProfile]:
    table = {}
    for gpu in gpu_profiles():
        for n in (gpu.id, gpu.name, *gpu.aliases):
            table.setdefault(_norm(n), gpu)
    by_id = {g.id: g for g in gpu_profiles()}
    for alias, gid in alias_defaults().items():
        table[_norm(alias)] = by_id[gid]
    return table


def _siblings(alias: str, chosen: GpuProfile) -> list[str]:
    """Other GPU kinds an alias could mean (e.g. 'a100' -> A100 40GB SXM4, A100 80GB PCIe)."""
    key = _norm(alias)
    others = [g for g in gpu_profiles() if g.id != chosen.id and key in _norm(g.id).replace("_", "-")]
    return [o.aliases[0] if o.aliases else o.id for o in others]


def resolve_gpu(name: str) -> tuple[GpuProfile, str | None]:
    """A GPU profile by id, name or alias; a note when an ambiguous alias picked the default."""
    key = _norm(name)
    table = _alias_table()
    if key not in table:
        close = difflib.get_close_matches(key, table.keys(), n=3, cutoff=0.0)
        hint = f"closest: {', '.join(close)}; all: `deploykit gpus`"
        raise DeployKitError(f"unknown GPU '{name}'", hint)
    gpu = table[key]
    note = None
    if key in {_norm(a) for a in alias_defaults()}:
        sib = _siblings(name, gpu)
        if sib:
            note = f"'{name}' means {gpu.short} (default; say {' or '.join(sib)} for the others)"
    return gpu, note


def parse_inventory(spec: str) -> list[InventoryItem]:
    """Parse --gpus; items of the same kind merge. Raises DeployKitError on bad input."""
    if not spec or not spec.strip():
        raise DeployKitError("--gpus is empty", "e.g. --gpus 4xA100 or --gpus 2xH100,1xL40S")
    merged: dict[str, InventoryItem] = {}
    for raw in spec.split(","):
        m = _ITEM.match(raw)
        if not raw.strip() or not m:
            raise DeployKitError(f"empty item in --gpus '{spec}'", "separate kinds with commas: 2xH100,1xL40S")
        count = int(m["count"]) if m["count"] is not None else 1
        if count < 1:
            raise DeployKitError(f"GPU count must be at least 1 in '{raw.strip()}'", "e.g. 1xH100")
        if count > MAX_COUNT:
            raise DeployKitError(f"GPU count {count} in '{raw.strip()}' is over {MAX_COUNT:,}",
                                 "plan one cluster at a time")
        gpu, note = resolve_gpu(m["name"])
        if gpu.id in merged:
            prev = merged[gpu.id]
            merged[gpu.id] = InventoryItem(gpu, prev.count + count, prev.spelled, prev.default_note or note)
        else:
            merged[gpu.id] = InventoryItem(gpu, count, m["name"], note)
    return list(merged.values())


def format_inventory(items: list[InventoryItem]) -> str:
    return ", ".join(f"{i.count}x {i.gpu.short}" for i in items)
