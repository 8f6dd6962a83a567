"""Writes every initializer of a traced graph to OUT/model.onnx.data, with a rich progress bar."""

from __future__ import annotations

from pathlib import Path

import torch

from deploykit.export.weights import ExternalDataWriter, reader_from_tensor

INLINE_LIMIT = 1024  # bytes: smaller real constants (shape arithmetic, scalars) stay inside model.onnx
GRAPH_PREFIX = "model."  # the tracing wrapper holds deploykit's model as `.model`


def _const_tensor(value) -> torch.Tensor | None:
    raw = getattr(value.const_value, "raw", None)
    if isinstance(raw, torch.Tensor):
        return raw
    return None


def write_initializers(ir_model, out_dir: Path, readers, progress: bool = True) -> tuple[int, int]:
    """Replaces weight initializers by external tensors written from `readers`; returns (count, bytes)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    graph = ir_model.graph
    todo = []
    for name, value in graph.initializers.items():
        t = _const_tensor(value)
        if t is not None and (t.device.type == "meta" or t.numel() * t.element_size() > INLINE_LIMIT):
            todo.append((name, value, t))
    writer = ExternalDataWriter(out_dir)
    columns = (
        TextColumn("[bold]writing weights"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    try:
        with Progress(*columns, disable=not progress, transient=False) as bar:
            task = bar.add_task("", total=len(todo))
            for name, value, t in todo:
                bar.update(task, description=name)
                if t.device.type == "meta":
                    param = name.removeprefix(GRAPH_PREFIX)
                    reader = readers.reader(param, tuple(t.shape), t.dtype)
                else:
                    reader = reader_from_tensor(t)
                value.const_value = writer.write(name, reader, t.dtype)
                bar.advance(task)
    finally:
        writer.close()
    return writer.count, writer.offset
