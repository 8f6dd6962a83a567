"""CausalConv1d Triton kernel against deploykit.ops.causal_conv1d.naive_causal_conv1d (TRITON_INTERPRET=1)."""

import pytest
import torch
from deploykit.plugins.gated_delta_net import causal_conv1d_fwd

from deploykit.ops.causal_conv1d import naive_causal_conv1d

from ._util import assert_within_rounding, rel_err


@pytest.mark.parametrize(
    "B,C,T,KW", [(2, 40, 1, 4), (1, 300, 2, 4), (2, 24, 70, 4), (1, 16, 5, 3), (1, 8, 1, 2)]
)
@pytest.mark.parametrize("activation", ["silu", "none"])
def test_fp32_matches_naive(B, C, T, KW, activation):
    gen = torch.Generator().manual_seed(T * 7 + KW)
    x, st, w = (
        torch.randn(B, C, T, generator=gen),
        torch.randn(B, C, KW - 1, generator=gen),
        torch.randn(C, KW, generator=gen),
    )
    o, s = causal_conv1d_fwd(x, st, w, activation)
    ro, rs = naive_causal_conv1d(x, st, w, activation)
    assert rel_err(o, ro) <= 1e-6
    assert torch.equal(s, rs)  # the new state is a copy, bit-exact


def test_bf16_decode_chain_matches_one_pass():
    """Three single-token steps carry the state exactly like one 3-token call."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 48, 3, generator=gen).bfloat16()
    st, w = torch.zeros(2, 48, 3).bfloat16(), torch.randn(48, 4, generator=gen).bfloat16()
    ro, rs = naive_causal_conv1d(x, st, w, "silu")
    outs, s = [], st
    for t in range(3):
        o, s = causal_conv1d_fwd(x[..., t : t + 1], s, w, "silu")
        outs.append(o)
    assert torch.equal(s, rs)
    assert_within_rounding(torch.cat(outs, -1), ro)


def test_a_state_that_does_not_fit_the_kernel_width_is_refused():
    """conv_state holds the K-1 inputs before x: 2 columns beside a kernel 4 wide would be read past its
    end."""
    x, st, w = torch.zeros(1, 8, 3), torch.zeros(1, 8, 2), torch.zeros(8, 4)
    with pytest.raises(ValueError, match="^CausalConv1d: needs Km1 == K - 1, got Km1=2, K=4 "):
        causal_conv1d_fwd(x, st, w)
    message = "^CausalConv1d: input 'weight' has C=7, but an earlier input has C=8$"
    with pytest.raises(ValueError, match=message):
        causal_conv1d_fwd(x, torch.zeros(1, 8, 3), torch.zeros(7, 4))
