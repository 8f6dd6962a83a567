"""Streaming initializer writer: ONNX external data written tensor by tensor, never the whole model in memory.

The graph is traced with parameters on the meta device, so its initializers hold no data. Each one is
resolved to a `TensorReader` (a safetensors file, the random-weight generator, or a real tensor such as
a folded constant), read in row blocks, converted to the graph's dtype and appended to OUT/model.onnx.data.
The initializer is then replaced by an `onnx_ir.ExternalTensor` pointing at its bytes, so serialising the
graph never loads weights. Peak memory is one row block (plus whatever one reader needs to produce it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

DATA_FILE = "model.onnx.data"
ALIGN = 64  # byte alignment of each tensor's offset: keeps rows aligned for mmap'ed SIMD loads
BLOCK_BYTES = 64 << 20  # read/convert/write 64 MiB of rows at a time


@dataclass
class TensorReader:
    """Produces a tensor of `shape` in row blocks: read(start, stop) -> tensor[start:stop] (any dtype)."""

    shape: tuple[int, ...]
    read: Callable[[int, int], torch.Tensor]


def reader_from_tensor(t: torch.Tensor) -> TensorReader:
    return TensorReader(tuple(t.shape), lambda a, b: t[a:b] if t.dim() else t)


def reader_from_safetensors(handle, key: str) -> TensorReader:
    """A row-sliced reader over `safe_open(...)` without loading the full tensor."""
    sl = handle.get_slice(key)
    shape = tuple(sl.get_shape())
    if not shape:
        return TensorReader(shape, lambda a, b: handle.get_tensor(key))
    return TensorReader(shape, lambda a, b: sl[a:b])


def _raw_bytes(t: torch.Tensor) -> bytes:
    t = t.contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: write the raw 16-bit pattern
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def _blocks(reader: TensorReader, dtype: torch.dtype) -> Iterator[bytes]:
    shape = reader.shape
    if not shape:
        yield _raw_bytes(reader.read(0, 1).reshape(()).to(dtype))
        return
    row_bytes = max(1, math.prod(shape[1:]) * torch.empty((), dtype=dtype).element_size())
    rows = max(1, BLOCK_BYTES // row_bytes)
    for start in range(0, shape[0], rows):
        block = reader.read(start, min(shape[0], start + rows))
        yield _raw_bytes(block.to(dtype))


@dataclass
class WrittenTensor:
    name: str
    offset: int
    length: int


class ExternalDataWriter:
    """Appends tensors to one data file; `write()` returns the ir.ExternalTensor to put in the graph."""

    def __init__(self, out_dir: Path, location: str = DATA_FILE):
        self.out_dir, self.location = Path(out_dir), location
        self._f = open(self.out_dir / location, "wb")  # noqa: SIM115  (open across write() calls; close())
        self.offset = 0
        self.count = 0

    def write(self, name: str, reader: TensorReader, dtype: torch.dtype):
        import onnx_ir as ir

        pad = (-self.offset) % ALIGN
        if pad:
            self._f.write(b"\0" * pad)
            self.offset += pad
        start = self.offset
        for chunk in _blocks(reader, dtype):
            self._f.write(chunk)
            self.offset += len(chunk)
        expected = math.prod(reader.shape) * torch.empty((), dtype=dtype).element_size()
        if self.offset - start != expected:
            raise ValueError(f"initializer {name}: wrote {self.offset - start} bytes, expected {expected}")
        self.count += 1
        return ir.ExternalTensor(
            self.location,
            offset=start,
            length=expected,
            dtype=ir_dtype(dtype),
            shape=ir.Shape(reader.shape),
            name=name,
            base_dir=str(self.out_dir),
        )

    def close(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()


def ir_dtype(dtype: torch.dtype):
    import onnx_ir as ir

    table = {
        torch.float32: ir.DataType.FLOAT,
        torch.float16: ir.DataType.FLOAT16,
        torch.bfloat16: ir.DataType.BFLOAT16,
        torch.float64: ir.DataType.DOUBLE,
        torch.int64: ir.DataType.INT64,
        torch.int32: ir.DataType.INT32,
        torch.bool: ir.DataType.BOOL,
        torch.int8: ir.DataType.INT8,
        torch.uint8: ir.DataType.UINT8,
    }
    return table[dtype]
