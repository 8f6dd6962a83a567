"""Causal conv1d with state: naive vs transformers' causal_conv1d_fn / causal_conv1d_update."""

import inspect

import pytest
import torch
from transformers.models.qwen3_5.modeling_qwen3_5 import causal_conv1d_fn, causal_conv1d_update

from deploykit.ops.causal_conv1d import causal_conv1d, naive_causal_conv1d


def test_same_signature():
    assert inspect.signature(naive_causal_conv1d) == inspect.signature(causal_conv1d)


@pytest.mark.parametrize("fn", [naive_causal_conv1d, causal_conv1d])
@pytest.mark.parametrize("T", [1, 2, 9])
def test_prefill_from_zero_state_matches_transformers(fn, T):
    torch.manual_seed(T)
    x, w = torch.randn(2, 6, T), torch.randn(6, 4)
    out, state = fn(x, torch.zeros(2, 6, 3), w, activation="silu")
    torch.testing.assert_close(out, causal_conv1d_fn(x, w, activation="silu"), rtol=1e-6, atol=1e-6)
    full = torch.cat([torch.zeros(2, 6, 3), x], -1)
    assert torch.equal(state, full[..., -3:])


@pytest.mark.parametrize("fn", [naive_causal_conv1d, causal_conv1d])
def test_decode_step_matches_transformers_update(fn):
    torch.manual_seed(0)
    x, w, s = torch.randn(2, 6, 1), torch.randn(6, 4), torch.randn(2, 6, 3)
    hf_state = torch.cat([torch.zeros(2, 6, 1), s], -1)  # HF keeps K columns, the oldest unused
    ref = causal_conv1d_update(x, hf_state, w, activation="silu")
    out, state = fn(x, s, w, activation="silu")
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(state, hf_state[..., 1:])


@pytest.mark.parametrize("activation", ["silu", "none"])
def test_split_equals_whole(activation):
    torch.manual_seed(1)
    x, w = torch.randn(1, 5, 11), torch.randn(5, 4)
    whole, s_whole = naive_causal_conv1d(x, torch.zeros(1, 5, 3), w, activation)
    a, s = causal_conv1d(x[..., :2], torch.zeros(1, 5, 3), w, activation)  # T < K-1: state keeps old columns
    b, s = causal_conv1d(x[..., 2:], s, w, activation)
    torch.testing.assert_close(torch.cat([a, b], -1), whole, rtol=1e-6, atol=1e-6)
    assert torch.equal(s, s_whole)


def test_bad_activation_and_state_width():
    x, w = torch.randn(1, 2, 3), torch.randn(2, 4)
    with pytest.raises(ValueError, match="activation"):
        naive_causal_conv1d(x, torch.zeros(1, 2, 3), w, "relu")
    with pytest.raises(ValueError, match="K-1"):
        causal_conv1d(x, torch.zeros(1, 2, 2), w, "silu")
