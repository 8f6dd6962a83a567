"""GatedDeltaRule Triton kernels (recurrent decode / chunked prefill) against the op's naive token-by-token
reference (deploykit.ops.gated_delta_rule.naive_gated_delta_rule), under TRITON_INTERPRET=1 on tiny shapes."""

import pytest
import torch
from deploykit.plugins.gated_delta_net import gated_delta_rule_fwd
from deploykit.plugins.gated_delta_net.launch import CHUNK

from deploykit.ops.gated_delta_rule import naive_gated_delta_rule

from ._util import BF16_ULP, FP16_ULP, assert_within_rounding, rel_err


def make(B, T, HK, HV, K, V, dtype, seed=0, zero_state=False):
    gen = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=gen)

    q, k, v = r(B, T, HK, K).to(dtype), r(B, T, HK, K).to(dtype), r(B, T, HV, V).to(dtype)
    g = -torch.rand(B, T, HV, generator=gen) * 0.3  # log decay <= 0
    beta = torch.rand(B, T, HV, generator=gen).to(dtype)
    h0 = torch.zeros(B, HV, K, V) if zero_state else r(B, HV, K, V) * 0.5
    return q, k, v, g, beta, h0


CASES = [  # (B, T, HK, HV, K, V, mode): GQA everywhere but one; T=1 decode; T not a multiple of the chunk
    pytest.param(3, 1, 2, 4, 16, 16, "recurrent", id="decode-T1-gqa2"),
    pytest.param(2, 1, 1, 3, 32, 16, "chunk", id="chunk-T1-gqa3"),
    pytest.param(1, 9, 2, 2, 16, 32, "recurrent", id="recurrent-T9-nogqa"),
    pytest.param(1, CHUNK + 6, 1, 2, 16, 16, "chunk", id="chunk-T70-gqa2"),
    pytest.param(2, 2 * CHUNK, 2, 4, 16, 16, "chunk", id="chunk-T128-exact"),
    pytest.param(1, CHUNK + 6, 1, 2, 16, 16, "auto", id="auto-T70"),
    pytest.param(2, CHUNK + 6, 1, 2, 16, 16, "blocked", id="chunk-blocked-T70"),
    pytest.param(1, CHUNK + 3, 1, 3, 24, 20, "chunk", id="chunk-T67-dims-not-pow2"),
    pytest.param(2, CHUNK + 6, 1, 2, 16, 16, "split", id="split-T70-gqa2"),
    pytest.param(1, CHUNK + 3, 1, 3, 24, 20, "split", id="split-T67-dims-not-pow2"),
    pytest.param(2, CHUNK + 6, 1, 2, 16, 16, "split3", id="split3-T70-gqa2"),
    pytest.param(1, 2 * CHUNK + 3, 1, 3, 24, 20, "split3", id="split3-T131-dims-not-pow2"),
    pytest.param(1, 5, 2, 4, 16, 16, "split3", id="split3-T5-one-partial-chunk"),
    pytest.param(1, 4, 1, 3, 24, 20, "recurrent", id="recurrent-dims-not-pow2"),
]


@pytest.mark.parametrize("B,T,HK,HV,K,V,mode", CASES)
def test_fp32_matches_naive(B, T, HK, HV, K, V, mode):
    args = make(B, T, HK, HV, K, V, torch.float32)
    solve = "blocked" if mode == "blocked" else "rows"
    o, h = gated_delta_rule_fwd(*args, K**-0.5, 1, mode="chunk" if mode == "blocked" else mode, solve=solve)
    ro, rh = naive_gated_delta_rule(*args, K**-0.5, 1)
    assert rel_err(h, rh) <= 1e-5 and h.dtype == torch.float32
    assert rel_err(o, ro) <= 1e-5 and o.shape == ro.shape


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode", ["recurrent", "chunk", "split", "split3"])
def test_16bit_activations_within_rounding(dtype, mode):
    args = make(2, 21, 1, 2, 16, 16, dtype, seed=1)
    o, h = gated_delta_rule_fwd(*args, 0.25, 1, mode=mode)
    ro, rh = naive_gated_delta_rule(*args, 0.25, 1)
    assert o.dtype == dtype and h.dtype == torch.float32
    assert rel_err(h, rh) <= 1e-5  # same 16-bit inputs, fp32 math on both sides
    assert_within_rounding(o, ro)


def test_without_l2norm_and_zero_state():
    q, k, v, g, beta, h0 = make(1, 12, 2, 2, 16, 16, torch.float32, seed=2, zero_state=True)
    q, k = q * 0.2, k * 0.2  # keep un-normalised keys small enough for a stable delta rule
    for mode in ("recurrent", "chunk"):
        o, h = gated_delta_rule_fwd(q, k, v, g, beta, h0, 0.3, 0, mode=mode)
        ro, rh = naive_gated_delta_rule(q, k, v, g, beta, h0, 0.3, 0)
        assert rel_err(h, rh) <= 1e-5 and rel_err(o, ro) <= 1e-5, mode


def test_blocked_solve_with_nearly_parallel_keys():
    """The blocked inverse's series (I - M + M^2 - M^3) stays accurate when keys are nearly parallel and
    beta ~ 1, where A has its largest entries."""
    q, k, v, g, beta, h0 = make(1, CHUNK, 1, 1, 16, 16, torch.float32, seed=7)
    k = k * 0.1 + torch.randn(1, 1, 1, 16, generator=torch.Generator().manual_seed(8))
    beta, g = torch.full_like(beta, 0.99), torch.zeros_like(g)
    ro, rh = naive_gated_delta_rule(q, k, v, g, beta, h0, 0.25, 1)
    o, h = gated_delta_rule_fwd(q, k, v, g, beta, h0, 0.25, 1, mode="chunk", solve="blocked")
    assert rel_err(h, rh) <= 1e-5 and rel_err(o, ro) <= 1e-5


def test_prefill_split_in_two_then_decode():
    """Prefill 37 + 23 + 17 tokens (none a chunk multiple; the persistent kernel, then the two- and the
    three-launch paths) then one decode step == one pass over all 78."""
    q, k, v, g, beta, h0 = make(2, 78, 1, 2, 16, 16, torch.float32, seed=3)
    ro, rh = naive_gated_delta_rule(q, k, v, g, beta, h0, 0.25, 1)
    parts, h = [], h0
    for lo, hi, mode, solve in (
        (0, 37, "chunk", "rows"),
        (37, 60, "split", "blocked"),
        (60, 77, "split3", "rows"),
        (77, 78, "recurrent", ""),
    ):
        o, h = gated_delta_rule_fwd(
            q[:, lo:hi],
            k[:, lo:hi],
            v[:, lo:hi],
            g[:, lo:hi],
            beta[:, lo:hi],
            h,
            0.25,
            1,
            mode=mode,
            solve=solve,
        )
        parts.append(o)
    assert rel_err(h, rh) <= 1e-5
    assert rel_err(torch.cat(parts, dim=1), ro) <= 1e-5


@pytest.mark.parametrize("chunk_size,solve", [(16, "rows"), (16, "blocked"), (32, "rows"), (32, "blocked")])
def test_smaller_chunks_match_naive(chunk_size, solve):
    """16- and 32-token chunks (QDP tactic 4, the bench's spill-free prefill): T = 70 is 4 full chunks of 16
    plus 6 tokens, or 2 of 32 plus 6; GQA 2, non-zero initial state, fp32 and bf16 activations."""
    for dtype, seed in ((torch.float32, 5), (torch.bfloat16, 6)):
        args = make(2, 70, 1, 2, 16, 16, dtype, seed=seed)
        o, h = gated_delta_rule_fwd(*args, 0.25, 1, mode="chunk", solve=solve, chunk_size=chunk_size)
        ro, rh = naive_gated_delta_rule(*args, 0.25, 1)
        assert rel_err(h, rh) <= 1e-5
        if dtype == torch.float32:
            assert rel_err(o, ro) <= 1e-5
        else:
            assert_within_rounding(o, ro)


SCRATCH16_ULPS = 4.0  # of the output scale: three operands of O = (Q o exp(gc)) S + A D rounded to 16 bits
# (half an ulp each, terms as large as the output) plus the output's own rounding: <= 2 ulps before
# cancellation; measured under the interpreter (12 cases each): bf16 up to 1.94, fp16 up to 0.94


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("B,T,HK,HV,K,V", [(2, CHUNK + 6, 1, 2, 16, 16), (1, 2 * CHUNK + 3, 1, 3, 24, 20),
                                         (1, 5, 2, 4, 16, 16), (1, 2 * CHUNK + 22, 1, 2, 128, 128)],
                         ids=["T70-gqa2", "T131-not-pow2", "T5", "qwen35-head-dims"])
def test_split3_16bit_scratch(dtype, B, T, HK, HV, K, V):
    """scratch16 (fla's precision for the output side): the recurrence never reads the rounded scratch, so
    the state still meets 1e-5; the output is held to a few ulps of its scale, not one ulp per element."""
    args = make(B, T, HK, HV, K, V, dtype, seed=4)
    o, h = gated_delta_rule_fwd(*args, K**-0.5, 1, mode="split3", scratch16=True)
    o32, _ = gated_delta_rule_fwd(*args, K**-0.5, 1, mode="split3")
    ro, rh = naive_gated_delta_rule(*args, K**-0.5, 1)
    ulp = BF16_ULP if dtype == torch.bfloat16 else FP16_ULP
    assert o.dtype == dtype and rel_err(h, rh) <= 1e-5
    assert rel_err(o, ro) <= SCRATCH16_ULPS * ulp
    assert not torch.equal(o, o32)  # the knob reached the kernels: the 16-bit scratch rounds differently


def test_scratch16_needs_split3_and_16bit_activations():
    for dtype, mode in ((torch.bfloat16, "split"), (torch.bfloat16, "auto"), (torch.float32, "split3")):
        with pytest.raises(ValueError, match="scratch16 needs mode='split3' and bf16/fp16"):
            gated_delta_rule_fwd(*make(1, 70, 1, 1, 16, 16, dtype), 0.25, 1, mode=mode, scratch16=True)


def test_out_buffers_are_written_and_checked():
    args = make(2, 5, 1, 2, 16, 16, torch.float32, seed=9)
    o, h = torch.full((2, 5, 2, 16), float("nan")), torch.full((2, 2, 16, 16), float("nan"))
    got = gated_delta_rule_fwd(*args, 0.25, 1, out=(o, h))
    ro, rh = naive_gated_delta_rule(*args, 0.25, 1)
    assert got[0] is o and got[1] is h
    assert rel_err(h, rh) <= 1e-5 and rel_err(o, ro) <= 1e-5
    with pytest.raises(ValueError, match="out final_state must be contiguous"):
        gated_delta_rule_fwd(*args, 0.25, 1, out=(o, h.transpose(2, 3)))


def test_unknown_chunk_size_raises():
    with pytest.raises(ValueError, match="chunk_size must be one of"):
        gated_delta_rule_fwd(*make(1, 2, 1, 1, 16, 16, torch.float32), 0.25, 1, mode="chunk", chunk_size=48)


def test_zero_tokens_returns_the_state():
    args = make(2, 0, 1, 2, 16, 16, torch.float32)
    o, h = gated_delta_rule_fwd(*args, 0.25, 1)
    assert o.shape == (2, 0, 2, 16) and torch.equal(h, args[5])


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match="mode must be one of"):
        gated_delta_rule_fwd(*make(1, 2, 1, 1, 16, 16, torch.float32), 0.25, 1, mode="fast")


def test_bad_shapes_raise():
    q, k, v, g, beta, h0 = make(1, 2, 2, 3, 16, 16, torch.float32)  # Hv=3 not a multiple of Hk=2
    with pytest.raises(ValueError, match="^GatedDeltaRule: needs Hv % Hk == 0, got Hv=3, Hk=2 "):
        gated_delta_rule_fwd(q, k, v, g, beta, h0, 0.25, 1)
    q, k, v, g, beta, h0 = make(1, 2, 2, 4, 16, 16, torch.float32)
    with pytest.raises(ValueError, match="^GatedDeltaRule: input 'initial_state' has Dv=8, but an earlier"):
        gated_delta_rule_fwd(q, k, v, g, beta, h0[..., :8], 0.25, 1)


@pytest.mark.parametrize(
    "mode,solve,block_v,chunk_size",
    [("chunk", "blocked", 64, CHUNK), ("chunk", "rows", 32, 16), ("split", "rows", 32, CHUNK),
     ("split3", "blocked", 32, CHUNK)],
)
def test_qwen35_head_dims_with_the_gpu_tiles(mode, solve, block_v, chunk_size):
    """Dk = Dv = 128 (every Qwen3.5 size): BK = 128, the 128-wide scratch, the 64-wide output tiles and the
    value tiles the benchmark times, which the tiny-head cases above never reach; bf16 activations, 2 full
    chunks + 22 tokens."""
    args = make(1, 2 * CHUNK + 22, 1, 2, 128, 128, torch.bfloat16, seed=11)
    o, h = gated_delta_rule_fwd(
        *args, 128**-0.5, 1, mode=mode, solve=solve, block_v=block_v, chunk_size=chunk_size
    )
    ro, rh = naive_gated_delta_rule(*args, 128**-0.5, 1)
    assert rel_err(h, rh) <= 1e-5
    assert_within_rounding(o, ro)
