"""Gated delta rule: naive vs transformers' recurrence (independent reference), chunked vs naive."""

import inspect

import pytest
import torch
from transformers.models.qwen3_5.modeling_qwen3_5 import torch_recurrent_gated_delta_rule

from deploykit.ops.gated_delta_rule import CHUNK_SIZE, chunk_gated_delta_rule, naive_gated_delta_rule

RTOL = 1e-5  # issue 3 acceptance: naive vs chunked fp32 relative error <= 1e-5


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def make_inputs(B, T, Hk, Hv, Dk, Dv, seed=0, dtype=torch.float32, state=True):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)
    q, k, v = r(B, T, Hk, Dk).to(dtype), r(B, T, Hk, Dk).to(dtype), r(B, T, Hv, Dv).to(dtype)
    g = -torch.rand(B, T, Hv, generator=gen) * 1.5  # log decay <= 0
    beta = torch.rand(B, T, Hv, generator=gen).to(dtype)
    h0 = r(B, Hv, Dk, Dv) if state else torch.zeros(B, Hv, Dk, Dv)
    return q, k, v, g, beta, h0


def test_same_signature():
    assert inspect.signature(naive_gated_delta_rule) == inspect.signature(chunk_gated_delta_rule)


@pytest.mark.parametrize("T", [1, 7, 64])
@pytest.mark.parametrize("Hk,Hv", [(2, 2), (2, 6)])
def test_naive_matches_transformers(T, Hk, Hv):
    q, k, v, g, beta, h0 = make_inputs(2, T, Hk, Hv, 16, 12)
    o, s = naive_gated_delta_rule(q, k, v, g, beta, h0, scale=16 ** -0.5, use_qk_l2norm=1)
    o_ref, s_ref = torch_recurrent_gated_delta_rule(q, k, v, g=g, beta=beta, initial_state=h0,
                                                     output_final_state=True, use_qk_l2norm_in_kernel=True)
    assert rel_err(o, o_ref) <= 1e-6 and rel_err(s, s_ref) <= 1e-6


def test_without_l2norm_is_plain_delta_rule():
    """use_qk_l2norm=0 with a single token and zero state: o = beta (q.k) v scale, by hand."""
    q, k, v, g, beta, _ = make_inputs(1, 1, 1, 1, 4, 3)
    h0 = torch.zeros(1, 1, 4, 3)
    o, s = naive_gated_delta_rule(q, k, v, g, beta, h0, scale=0.5, use_qk_l2norm=0)
    expected = 0.5 * beta[0, 0, 0] * (q[0, 0, 0] @ k[0, 0, 0]) * v[0, 0, 0]
    torch.testing.assert_close(o[0, 0, 0], expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(s[0, 0], beta[0, 0, 0] * torch.outer(k[0, 0, 0], v[0, 0, 0]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("T", [1, 5, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 150])
@pytest.mark.parametrize("Hk,Hv", [(2, 2), (1, 3), (2, 4)])
def test_chunked_matches_naive(T, Hk, Hv):
    q, k, v, g, beta, h0 = make_inputs(2, T, Hk, Hv, 16, 8, seed=T)
    o1, s1 = naive_gated_delta_rule(q, k, v, g, beta, h0, scale=16 ** -0.5)
    o2, s2 = chunk_gated_delta_rule(q, k, v, g, beta, h0, scale=16 ** -0.5)
    assert rel_err(o2, o1) <= RTOL, rel_err(o2, o1)
    assert rel_err(s2, s1) <= RTOL, rel_err(s2, s1)


@pytest.mark.parametrize("split", [1, 40, 64, 100])
def test_split_prefill_equals_whole(split):
    """Chunked over [0, split) then [split, T) with the carried state == naive over [0, T)."""
    q, k, v, g, beta, h0 = make_inputs(1, 150, 2, 4, 16, 8, seed=split)
    o_ref, s_ref = naive_gated_delta_rule(q, k, v, g, beta, h0, scale=0.25)
    parts = [slice(0, split), slice(split, 150)]
    state, outs = h0, []
    for p in parts:
        o, state = chunk_gated_delta_rule(q[:, p], k[:, p], v[:, p], g[:, p], beta[:, p], state, scale=0.25)
        outs.append(o)
    assert rel_err(torch.cat(outs, 1), o_ref) <= RTOL and rel_err(state, s_ref) <= RTOL


def test_strong_decay_does_not_overflow():
    """g as low as Qwen3.5 can give (A up to 16, softplus large): finite outputs, chunked == naive."""
    q, k, v, _, beta, h0 = make_inputs(1, 130, 1, 2, 8, 8)
    g = -torch.rand(1, 130, 2) * 40
    o1, s1 = naive_gated_delta_rule(q, k, v, g, beta, h0, scale=8 ** -0.5)
    o2, s2 = chunk_gated_delta_rule(q, k, v, g, beta, h0, scale=8 ** -0.5)
    assert torch.isfinite(o2).all() and torch.isfinite(s2).all()
    assert rel_err(o2, o1) <= RTOL and rel_err(s2, s1) <= RTOL


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_keep_contract_dtypes(dtype):
    q, k, v, g, beta, h0 = make_inputs(1, 70, 2, 2, 16, 16, dtype=dtype)
    for fn in (naive_gated_delta_rule, chunk_gated_delta_rule):
        o, s = fn(q, k, v, g, beta, h0, scale=0.25)
        assert o.dtype == dtype and s.dtype == torch.float32
    o1, _ = naive_gated_delta_rule(q, k, v, g, beta, h0, scale=0.25)
    o2, _ = chunk_gated_delta_rule(q, k, v, g, beta, h0, scale=0.25)
    assert rel_err(o2, o1) <= 1e-2  # both compute in fp32; the difference is the final rounding


def test_hv_not_multiple_of_hk_is_rejected():
    q, k, v, g, beta, h0 = make_inputs(1, 3, 2, 3, 4, 4)
    with pytest.raises(ValueError, match="multiple"):
        naive_gated_delta_rule(q, k, v, g, beta, h0, scale=0.5)


@pytest.mark.parametrize("T", [1, 5, CHUNK_SIZE, CHUNK_SIZE + 6, 150])
@pytest.mark.parametrize("l2norm", [1, 0])
def test_stage_references_compose_to_naive(T, l2norm):
    """GatedDeltaPrep -> GatedDeltaStates -> GatedDeltaOut (deploykit/ops/gated_delta_rule/stages.py) is the
    gated delta rule: output and final state equal the token-by-token reference; the padded rows of the last
    chunk hold what the contract says (w = u = vn = aqk = 0, gcs repeats the last real token's)."""
    from deploykit.ops.gated_delta_rule.stages import (
        naive_gated_delta_out,
        naive_gated_delta_prep,
        naive_gated_delta_states,
    )

    q, k, v, g, beta, h0 = make_inputs(2, T, 2, 4, 16, 8, seed=T)
    scale = 16**-0.5
    o_ref, s_ref = naive_gated_delta_rule(q, k, v, g, beta, h0, scale, l2norm)
    w, u, aqk, gcs = naive_gated_delta_prep(q, k, v, g, beta, scale, l2norm)
    hs, vn, s = naive_gated_delta_states(k, w, u, gcs, h0, l2norm)
    o = naive_gated_delta_out(q, hs, vn, aqk, gcs, scale, l2norm)
    assert rel_err(o, o_ref) <= RTOL and rel_err(s, s_ref) <= RTOL, (rel_err(o, o_ref), rel_err(s, s_ref))
    assert torch.equal(hs[:, :, 0], h0)  # the first chunk starts from the initial state
    real = T - (w.shape[2] - 1) * CHUNK_SIZE  # real rows of the last chunk
    for x in (w, u, vn, aqk):
        assert not x[:, :, -1, real:].any()
    assert torch.equal(gcs[:, :, -1, real:], gcs[:, :, -1, real - 1 : real].expand(-1, -1, CHUNK_SIZE - real))
