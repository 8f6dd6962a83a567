"""Error measures for kernel-vs-reference comparisons."""

import torch

BF16_ULP = 2.0**-7  # spacing of bf16 numbers relative to their magnitude (8 significant bits)
FP16_ULP = 2.0**-10  # fp16: 11 significant bits


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| / max |ref|: the fp32 figure the acceptance bounds by 1e-5."""
    return ((got.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-30)).item()


def assert_within_rounding(got: torch.Tensor, ref: torch.Tensor, ulps: float = 1.0, floor: float = 1e-5):
    """Elementwise |got - ref| <= ulps x one unit in the last place of ref's dtype (+ a tiny floor for zeros).
    Two fp32 results that differ by ~1e-6 can round to neighbouring 16-bit numbers: 1 ulp apart."""
    ulp = {torch.bfloat16: BF16_ULP, torch.float16: FP16_ULP}.get(ref.dtype, 1e-5)
    err = (got.float() - ref.float()).abs()
    bound = ulps * ulp * ref.float().abs() + floor
    worst = (err / bound).max().item()
    assert worst <= 1.0, (
        f"error {worst:.2f}x the {ulps}-ulp bound ({ref.dtype}); max abs err {err.max().item():.3g}"
    )
