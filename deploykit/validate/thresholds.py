"""Pass/fail thresholds of `deploykit validate`, per export dtype.

fp32: the issue's acceptance bar (max |dlogits| <= 1e-4 x max|logits|, every greedy token equal); the ONNX
graph and transformers do the same fp32 math in a different order, which measured ~2e-7 relative on tiny
models (/work/shared/reference/export-design.md section 7), so 1e-4 leaves margin for deep real models.
fp16 / bf16: weights and activations are rounded (unit roundoff 2^-11 for fp16, 2^-8 for bf16) in every
layer while the reference stays fp32; the bounds allow ~20 roundoffs of accumulated drift relative to the
largest logit, and a greedy token may flip where the top two logits are within that drift.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Thresholds(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_rel_err: float  # max |onnx - ref| / max |ref| over a step's logits
    min_cosine: float  # cosine similarity of the flattened logits of a step
    min_top1: float  # fraction of (sequence, token) positions whose argmax agrees
    max_state_rel_err: float  # max |onnx - ref| / max |ref| of each final state tensor


THRESHOLDS: dict[str, Thresholds] = {
    "float32": Thresholds(max_rel_err=1e-4, min_cosine=0.99999, min_top1=1.0, max_state_rel_err=1e-4),
    "float16": Thresholds(max_rel_err=2e-2, min_cosine=0.999, min_top1=0.9, max_state_rel_err=2e-2),
    "bfloat16": Thresholds(max_rel_err=8e-2, min_cosine=0.995, min_top1=0.8, max_state_rel_err=8e-2),
}
