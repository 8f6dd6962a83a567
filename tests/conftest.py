"""Shared fixtures. Tiny random Qwen3.5 checkpoints are written once per session by transformers' own
classes (deploykit.model.testing); `tiny_checkpoint("dense")` returns the directory."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Factory: tiny_checkpoint(name) -> checkpoint dir, name in deploykit.model.testing.TINY_VARIANTS."""
    pytest.importorskip("transformers")
    from deploykit.model.testing import make_tiny_variant

    cache: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("tiny_checkpoints")

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = make_tiny_variant(name, root / name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def tiny_dense(tiny_checkpoint) -> Path:
    return tiny_checkpoint("dense")


@pytest.fixture(scope="session")
def tiny_moe(tiny_checkpoint) -> Path:
    return tiny_checkpoint("moe")
