"""ONNX export of deploykit's Qwen3.5 model with the `deploykit` custom-op domain (see docs/export.md).

    from deploykit.export import export_onnx
    result = export_onnx(checkpoint_or_alias, out_dir, dtype="float32", layers=None,
                         random_weights=False, seed=0, decompose=False)

Importing this package does not import torch or onnx; `export_onnx` does.
"""

from __future__ import annotations


def export_onnx(*args, **kwargs):
    from deploykit.export.exporter import export_onnx as _export

    return _export(*args, **kwargs)


__all__ = ["export_onnx"]
