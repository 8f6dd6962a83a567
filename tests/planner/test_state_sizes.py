"""KV cache and Gated DeltaNet state sizes against hand-derived formulas and the qwen35.md section 4 table."""

import pytest

from deploykit.planner.anatomy import anatomy
from deploykit.planner.models import resolve_model

# Hand-derived (qwen35.md / anchors.md appendix A):
#   KV bytes/token = n_full_attention_layers x 2 (K and V) x num_key_value_heads x head_dim x bytes
#   recurrent state = n_linear_layers x linear_num_value_heads x key_head_dim x value_head_dim x bytes(fp32 = 4)
#   conv state = n_linear_layers x (2 nk dk + nv dv) x (kernel - 1) x 2 (bf16)
HAND = {
    # model: (n_full, n_linear, kv_heads, nk, nv)
    "Qwen3.5-0.8B": (6, 18, 2, 16, 16),
    "Qwen3.5-27B": (16, 48, 4, 16, 48),
    "Qwen3.5-35B-A3B": (10, 30, 2, 16, 32),
    "Qwen3.5-397B-A17B": (15, 45, 2, 16, 64),
}
# qwen35.md section 4, "Derived per-sequence state" table.
TABLE = {
    "Qwen3.5-0.8B": (12_288, 18_874_368, 663_552),
    "Qwen3.5-2B": (12_288, 18_874_368, 663_552),
    "Qwen3.5-4B": (32_768, 50_331_648, 1_179_648),
    "Qwen3.5-9B": (32_768, 50_331_648, 1_179_648),
    "Qwen3.5-27B": (65_536, 150_994_944, 2_949_120),
    "Qwen3.5-35B-A3B": (20_480, 62_914_560, 1_474_560),
    "Qwen3.5-122B-A10B": (24_576, 150_994_944, 2_654_208),
    "Qwen3.5-397B-A17B": (30_720, 188_743_680, 3_317_760),
}


@pytest.mark.parametrize("name", list(HAND))
def test_state_sizes_equal_hand_formulas(name):
    n_full, n_lin, nkv, nk, nv = HAND[name]
    a = anatomy(resolve_model(name))
    assert a.kv_bytes_per_token("bf16") == n_full * 2 * nkv * 256 * 2
    assert a.kv_bytes_per_token("fp8") == n_full * 2 * nkv * 256 * 1
    assert a.kv_bytes_per_token("bf16", mtp=True) == (n_full + 1) * 2 * nkv * 256 * 2  # MTP adds one attention layer
    assert a.recurrent_state_bytes("fp32") == n_lin * nv * 128 * 128 * 4
    assert a.recurrent_state_bytes("bf16") == n_lin * nv * 128 * 128 * 2
    assert a.conv_state_bytes() == n_lin * (2 * nk * 128 + nv * 128) * 3 * 2


@pytest.mark.parametrize("name", list(TABLE))
def test_state_sizes_equal_qwen35_md_table(name):
    a = anatomy(resolve_model(name))
    assert (a.kv_bytes_per_token("bf16"), a.recurrent_state_bytes("fp32"), a.conv_state_bytes()) == TABLE[name]
