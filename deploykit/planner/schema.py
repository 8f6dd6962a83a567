"""Output schema of `deploykit plan` (JSON / YAML). Documented in docs/planner.md; extra keys are forbidden."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LayoutGroup(_Strict):
    """Replicas on one GPU kind (a mixed inventory has one group per kind that hosts the model)."""

    gpu: str
    tp: int
    ep: int
    pp: int
    dp: int
    gpus: int
    max_batch: int
    decode_tok_s_max: float


class PlanLayout(_Strict):
    """tp/ep/pp/gpu: the primary group (highest throughput); dp and gpus: totals over all groups."""

    tp: int
    ep: int
    pp: int
    dp: int
    gpu: str
    gpus: int
    groups: list[LayoutGroup] = Field(default_factory=list)


class MemoryGiB(_Strict):
    """Per GPU of the primary group's fullest pipeline stage, at the planned batch; GiB."""

    weights: float
    kv_cache: float
    linear_state: float
    activations: float
    overhead: float
    total_per_gpu: float
    capacity_per_gpu: float


class Throughput(_Strict):
    decode_tok_s_b1: float
    decode_tok_s_max: float
    prefill_tok_s: float
    ttft_ms: float


class PlanEntry(_Strict):
    model: str
    precision: str
    fits: bool
    reason: str | None
    layout: PlanLayout | None
    memory_gib: MemoryGiB | None
    max_batch: int
    context: int
    throughput: Throughput | None
    notes: list[str]


class InventoryEntry(_Strict):
    gpu: str
    name: str
    count: int
    spelled: str


class PlanRequest(_Strict):
    context: int
    batch: int
    precisions: list[str]
    kv_dtype: str
    state_dtype: str
    vision: bool
    mtp: bool
    mem_util: float


class Plan(_Strict):
    inventory: list[InventoryEntry]
    request: PlanRequest
    entries: list[PlanEntry]
    recommendation: str | None
    notes: list[str]
