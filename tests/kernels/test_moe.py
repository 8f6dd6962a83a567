"""MoE Triton kernels against deploykit.ops.moe (naive_moe and its `route`), under TRITON_INTERPRET=1."""

import pytest
import torch
from deploykit.plugins.moe import moe_align_fwd, moe_fwd, moe_route_fwd

from deploykit.ops.moe import naive_moe, route

from ._util import BF16_ULP, FP16_ULP, rel_err


def make(N, H, E, I, dtype, seed=0):  # noqa: E741 (contract symbol I)
    gen = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=gen)

    return (
        r(N, H).to(dtype),
        r(N, E).to(dtype),
        (r(E, 2 * I, H) * H**-0.5).to(dtype),
        (r(E, H, I) * I**-0.5).to(dtype),
    )


@pytest.mark.parametrize("N,E,k,norm", [(1, 8, 2, 1), (7, 24, 10, 1), (5, 16, 4, 0)])
def test_route_matches_reference(N, E, k, norm):
    logits = make(N, 8, E, 4, torch.float32, seed=N)[1]
    ids, w = moe_route_fwd(logits, k, norm)
    rw, rids = route(logits, k, norm)
    assert torch.equal(ids.long(), rids)
    assert rel_err(w, rw) <= 1e-6


def test_route_breaks_ties_like_the_reference():
    """Equal probabilities (16-bit logits tie often): both take the lower expert id (the contract's rule)."""
    logits = torch.tensor([[0.5, 2.0, 1.0, 2.0, 1.0, 2.0], [1.0, 1.0, 1.0, 1.0, 3.0, 0.0]]).to(torch.bfloat16)
    ids, w = moe_route_fwd(logits, 3, 1)
    rw, rids = route(logits, 3, 1)
    assert ids.tolist() == rids.tolist() == [[1, 3, 5], [4, 0, 1]]
    assert rel_err(w, rw) <= 1e-6


def test_align_groups_pairs_by_expert_in_order():
    """Each expert's slots hold exactly its pairs in original order (a stable sort by expert), padded to BM."""
    ids = torch.tensor([[3, 0], [0, 5], [3, 1], [5, 0], [2, 3]], dtype=torch.int32)
    E, BM, P = 6, 4, ids.numel()
    slot_pair, block_expert = moe_align_fwd(torch.zeros(ids.shape[0], E), ids, BM)
    flat = ids.reshape(-1)
    for b, e in enumerate(block_expert.tolist()):
        rows = slot_pair[b * BM : (b + 1) * BM]
        real = rows[rows < P]
        if e == E:  # past the last used block: nothing but padding
            assert real.numel() == 0
        else:
            assert (flat[real.long()] == e).all()
    got = [p for p in slot_pair.tolist() if p < P]
    assert got == torch.argsort(flat, stable=True).tolist()
    assert set(slot_pair.tolist()) <= set(range(P + 1))  # every other slot holds the sentinel P (no pre-fill)


@pytest.mark.parametrize(
    "N,H,E,I,k,norm,tiles",
    [
        (1, 32, 8, 16, 2, 1, None),  # decode: one token
        (6, 64, 24, 32, 10, 1, None),  # top-10, E not a power of two
        (
            40,
            32,
            4,
            16,
            2,
            0,
            dict(BM=16, BN_GU=16, BN_DOWN=16, BK=16),
        ),  # several row blocks per expert, K loop
        (40, 32, 4, 16, 2, 1, None),  # 80 pairs > 2E: the launcher's prefill tiles (BM=64)
    ],
)
def test_fp32_matches_naive(N, H, E, I, k, norm, tiles):  # noqa: E741 (contract symbol I)
    args = make(N, H, E, I, torch.float32, seed=N)
    out = moe_fwd(*args, k, norm, path="grouped", tiles=tiles)
    ref = naive_moe(*args, k, norm)
    assert out.dtype == ref.dtype and rel_err(out, ref) <= 1e-5


@pytest.mark.parametrize(
    "N,H,E,I,k,norm,tiles",
    [
        (1, 32, 8, 16, 2, 1, None),  # decode: one token
        (3, 48, 24, 40, 10, 0, None),  # top-10, E / H / I not powers of two, no renormalisation
        (4, 64, 16, 32, 4, 1, dict(BN_GU=8, BN_DOWN=16, BK=16)),  # K loops of several steps in both GEMVs
        (9, 32, 4, 16, 2, 1, None),  # more tokens than experts: experts shared by tokens, each read per pair
    ],
)
def test_pairs_path_fp32_matches_naive(N, H, E, I, k, norm, tiles):  # noqa: E741 (contract symbol I)
    args = make(N, H, E, I, torch.float32, seed=N + 100)
    out = moe_fwd(*args, k, norm, path="pairs", tiles=tiles)
    ref = naive_moe(*args, k, norm)
    assert out.dtype == ref.dtype and rel_err(out, ref) <= 1e-5


def test_pairs_path_default_tiles_at_wider_dims():
    """The launcher's own pair tiles (16-row N tiles, 256-wide K steps: two per row here) on bf16, the
    configuration the GPU runs at batch 1, against the reference within a few output ulps."""
    args = make(2, 512, 12, 256, torch.bfloat16, seed=5)
    out, ref = moe_fwd(*args, 8, 1, path="pairs"), naive_moe(*args, 8, 1)
    assert rel_err(out, ref) <= 4 * BF16_ULP


def test_unknown_path_raises():
    with pytest.raises(ValueError, match="path must be one of"):
        moe_fwd(*make(1, 8, 4, 4, torch.float32), 2, 1, path="fast")


def test_inputs_outside_the_contract_are_refused_before_any_kernel():
    """By hand from the contract: gate_up is [gate; up], 2 I = 8 rows beside down's I = 3 columns does not
    fit; top_k = 5 of E = 4 experts cannot be distinct; N = 0 tokens are checked too (nothing is launched)."""
    hidden, logits, gate_up, down = make(1, 8, 4, 4, torch.float32)
    with pytest.raises(ValueError, match=r"^MoE: needs I2 == 2 \* I, got I2=8, I=3 "):
        moe_fwd(hidden, logits, gate_up, down[:, :, :3], 2, 1)
    with pytest.raises(ValueError, match="^MoE: needs 1 <= top_k <= E, got top_k=5, E=4 "):
        moe_fwd(hidden[:0], logits[:0], gate_up, down, 5, 1)


@pytest.mark.parametrize("dtype,ulp", [(torch.bfloat16, BF16_ULP), (torch.float16, FP16_ULP)])
def test_16bit_within_rounding(dtype, ulp):
    """The SwiGLU intermediate is kept in the activation dtype (as transformers does), so the bound is a few
    ulps of the output scale: one rounding of the intermediate plus one of the output."""
    args = make(5, 64, 16, 32, dtype, seed=9)
    ref = naive_moe(*args, 4, 1)
    for path in ("grouped", "pairs"):
        out = moe_fwd(*args, 4, 1, path=path)
        assert out.dtype == dtype
        assert rel_err(out, ref) <= 4 * ulp, path
