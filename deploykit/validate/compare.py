"""Step-by-step comparison of ONNX Runtime against a PyTorch reference, and its JSON report."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from deploykit.validate.thresholds import Thresholds


class StepMetrics(BaseModel):
    step: int
    kind: str  # "prefill", "chunk" or "decode"
    tokens: int
    past: int
    max_abs_err: float
    max_rel_err: float  # max_abs_err / max |reference logits|
    cosine: float
    top1_agreement: float
    passed: bool


class StateMetrics(BaseModel):
    name: str
    max_abs_err: float
    max_rel_err: float
    passed: bool


class ValidationReport(BaseModel):
    export_dir: str
    reference: str
    dtype: str
    batch: int
    thresholds: Thresholds
    providers: list[str]
    graph_optimization: str = "ORT_ENABLE_BASIC"
    steps: list[StepMetrics]
    final_states: list[StateMetrics]
    worst_rel_err: float
    min_top1: float
    passed: bool
    failures: list[str]


def step_metrics(
    i: int, kind: str, past: int, got: np.ndarray, ref: np.ndarray, th: Thresholds
) -> StepMetrics:
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    scale = float(np.abs(ref).max()) or 1.0
    a, b = got.reshape(-1).astype(np.float64), ref.reshape(-1).astype(np.float64)
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))
    top1 = float((got.argmax(-1) == ref.argmax(-1)).mean())
    rel = float(diff.max()) / scale
    ok = (
        bool(np.isfinite(got).all())
        and rel <= th.max_rel_err
        and cos >= th.min_cosine
        and top1 >= th.min_top1
    )
    return StepMetrics(
        step=i,
        kind=kind,
        tokens=got.shape[1],
        past=past,
        max_abs_err=float(diff.max()),
        max_rel_err=rel,
        cosine=cos,
        top1_agreement=top1,
        passed=ok,
    )


def state_metrics(name: str, got: np.ndarray, ref: np.ndarray, th: Thresholds) -> StateMetrics:
    if got.shape != ref.shape:
        return StateMetrics(name=name, max_abs_err=float("inf"), max_rel_err=float("inf"), passed=False)
    err = float(np.abs(got.astype(np.float64) - ref).max()) if got.size else 0.0
    rel = err / (float(np.abs(ref).max()) or 1.0) if got.size else 0.0
    return StateMetrics(
        name=name,
        max_abs_err=err,
        max_rel_err=rel,
        passed=bool(np.isfinite(got).all()) and rel <= th.max_state_rel_err,
    )


def failures(steps: list[StepMetrics], states: list[StateMetrics], th: Thresholds) -> list[str]:
    out = []
    for s in steps:
        if not s.passed:
            out.append(
                f"step {s.step} ({s.kind}, T={s.tokens}, past={s.past}): rel err {s.max_rel_err:.3g} "
                f"(max {th.max_rel_err:g}), cosine {s.cosine:.6f} (min {th.min_cosine:g}), "
                f"top-1 {s.top1_agreement:.3f} (min {th.min_top1:g})"
            )
    for s in states:
        if not s.passed:
            out.append(f"final state {s.name}: rel err {s.max_rel_err:.3g} (max {th.max_state_rel_err:g})")
    return out
