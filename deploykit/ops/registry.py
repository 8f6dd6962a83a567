"""Tiny backend registry: which implementation runs inside each deploykit torch custom op.

Each op has backends (naive reference, chunked/grouped CPU form, later Triton from plugins/). The
eager path picks the highest-priority backend whose `supports(*args)` accepts the call.
`DEPLOYKIT_FORCE_NAIVE=1` pins every op to its naive reference (for debugging a numerical mismatch);
`use(op, name)` pins one op inside a `with` block (tests, benchmarks).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

FORCE_NAIVE_ENV = "DEPLOYKIT_FORCE_NAIVE"
NAIVE = "naive"


@dataclass(frozen=True)
class Backend:
    name: str
    fn: Callable
    priority: int = 0
    supports: Callable[..., bool] = field(default=lambda *args: True)


_BACKENDS: dict[str, dict[str, Backend]] = {}
_PINNED: dict[str, str] = {}


def register(op: str, name: str, fn: Callable, priority: int = 0,
             supports: Callable[..., bool] | None = None) -> None:
    """Adds (or replaces) backend `name` of `op` (the contract's torch_name, e.g. 'gated_delta_rule')."""
    _BACKENDS.setdefault(op, {})[name] = Backend(name, fn, priority, supports or (lambda *args: True))


def backends(op: str) -> dict[str, Backend]:
    return dict(_BACKENDS.get(op, {}))


def select(op: str, *args) -> Backend:
    """The backend that runs `op` on these arguments."""
    table = _BACKENDS[op]
    if os.environ.get(FORCE_NAIVE_ENV, "0") not in ("", "0"):
        return table[NAIVE]
    if op in _PINNED:
        return table[_PINNED[op]]
    usable = [b for b in table.values() if b.supports(*args)]
    return max(usable, key=lambda b: b.priority)


@contextlib.contextmanager
def use(op: str, name: str) -> Iterator[None]:
    """Pins `op` to backend `name` inside the block."""
    if name not in _BACKENDS.get(op, {}):
        raise KeyError(f"no backend {name!r} for op {op!r}; have {sorted(_BACKENDS.get(op, {}))}")
    previous = _PINNED.get(op)
    _PINNED[op] = name
    try:
        yield
    finally:
        if previous is None:
            _PINNED.pop(op, None)
        else:
            _PINNED[op] = previous
