"""Which MoE kernel sequence runs for how many tokens. Pure Python (no torch, no triton): the launcher
(launch.py) and the builder's lowering (deploykit/build/lower.py) share these rules."""

from __future__ import annotations

PATHS = ("auto", "grouped", "pairs")
# "auto" takes the two-launch pairs path up to this many tokens. At 35B-A3B shapes (256 experts, top-8) 4
# tokens touch ~30 distinct experts for 32 pairs, so reading per pair costs ~6 % more bytes, against three
# launches saved (a few us each, about the time 8 experts take to stream). An estimate, not a measurement:
# bench/bench_moe.py times both paths at 1-8 tokens on the GPU.
PAIRS_MAX_TOKENS = 4


def choose_path(tokens: int, path: str = "auto") -> str:
    """The MoE path `moe_fwd` runs for `tokens` tokens: `path` itself, or for "auto" pairs up to
    PAIRS_MAX_TOKENS and grouped beyond."""
    if path not in PATHS:
        raise ValueError(f"MoE: path must be one of {', '.join(PATHS)}, got {path!r}")
    return path if path != "auto" else ("pairs" if tokens <= PAIRS_MAX_TOKENS else "grouped")


def grouped_block_m(pairs: int, E: int) -> int:
    """Rows per expert block of the grouped path: 16 (the smallest tl.dot tile) when there are about <= 2
    pairs per expert, as in decode, so one block holds each expert's tokens; 64 for prefill."""
    return 16 if pairs <= 2 * E else 64
