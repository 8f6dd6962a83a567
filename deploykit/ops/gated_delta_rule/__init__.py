"""Gated delta rule (deploykit::GatedDeltaRule): naive token-by-token reference and chunked WY form."""

from .chunk import CHUNK_SIZE, chunk_gated_delta_rule
from .naive import l2norm, naive_gated_delta_rule

__all__ = ["CHUNK_SIZE", "chunk_gated_delta_rule", "l2norm", "naive_gated_delta_rule"]
