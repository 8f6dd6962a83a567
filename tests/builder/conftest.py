"""Fixtures for the builder tests: TensorRT for RTX (real parser and builder, CPU only) or skip.

TRITON_INTERPRET=1 (as in tests/kernels/conftest.py, before any kernel is imported): test_enqueue.py runs the
plugins' launcher call on CPU tensors through Triton's interpreter."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # contract_graphs.py
os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture(scope="session")
def backend():
    pytest.importorskip("tensorrt_rtx_bindings")
    from deploykit.build.trt_backend import load_backend

    return load_backend("tensorrt-rtx")


@pytest.fixture
def save(tmp_path):
    """save(model, name) -> path of the ONNX file in a fresh temp dir."""
    import onnx

    def _save(model, name: str = "model.onnx") -> Path:
        path = tmp_path / name
        onnx.save(model, str(path))
        return path

    return _save
