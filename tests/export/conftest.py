"""Exports shared by the export tests: each tiny model is exported once per session (about 20-30 s each)."""

from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="session")
def exported(tiny_checkpoint, tmp_path_factory):
    """Factory: exported(kind, decompose, dtype) -> export dir of the tiny 'dense' / 'moe' checkpoint."""
    from deploykit.export import export_onnx

    cache = {}
    root = tmp_path_factory.mktemp("exports")

    def get(kind: str, decompose: bool = False, dtype: str = "fp32"):
        key = (kind, decompose, dtype)
        if key not in cache:
            out = root / f"{kind}{'_std' if decompose else ''}_{dtype}"
            if decompose and kind == "dense":  # one export goes through the CLI
                from deploykit.cli import main

                assert main(["export", str(tiny_checkpoint(kind)), "-o", str(out), "--decompose", "-q"]) == 0
            else:
                export_onnx(tiny_checkpoint(kind), out, decompose=decompose, dtype=dtype, progress=False)
            cache[key] = out
        return cache[key]

    return get
