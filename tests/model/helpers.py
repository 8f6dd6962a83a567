"""Shared helpers for the model tests: run our model and transformers' side by side."""

from __future__ import annotations

import torch

from deploykit.model.loader import load_model
from deploykit.model.testing import TINY_VARIANTS, load_hf_model

REL_TOL = 1e-4  # issue 3 acceptance: max|Δlogits| <= 1e-4 * max|logits| in fp32


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def models(path, name: str):
    kind = TINY_VARIANTS[name][0]
    return load_model(path, dtype=torch.float32), load_hf_model(kind, path)


@torch.no_grad()
def run(model, ids: torch.Tensor, state, mask: torch.Tensor | None = None, start: int | torch.Tensor = 0):
    """One forward of our model over ids [B,T]; mask [B,P+T] (all ones when None); positions from start."""
    B, T = ids.shape
    P = state_past(model, state)
    if mask is None:
        mask = torch.ones(B, P + T, dtype=torch.long)
    pos = (torch.as_tensor(start).reshape(-1, 1) + torch.arange(T)[None]).expand(B, T)
    return model(ids, pos, mask, state)


def state_past(model, state) -> int:
    names = model.state_names()
    for n, s in zip(names, state, strict=True):
        if n.endswith(".key"):
            return s.shape[2]
    return 0
