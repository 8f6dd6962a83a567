"""GatedDeltaRule's stage launchers (one kernel each, contract STAGE_OPS GatedDeltaPrep / States / Out) against
their naive references (deploykit/ops/gated_delta_rule/stages.py), their composition against the token-by-token
naive_gated_delta_rule, and their outputs against the contract's shape rule, under TRITON_INTERPRET=1."""

import pytest
import torch
from deploykit.plugins import launcher

from deploykit.ops.contract import STAGE_OPS
from deploykit.ops.gated_delta_rule import naive_gated_delta_rule
from deploykit.ops.gated_delta_rule import stages as ref

from ._util import assert_within_rounding, rel_err
from .test_gdn import make
from .test_moe_stages import _check_rule

STAGES = ("GatedDeltaPrep", "GatedDeltaStates", "GatedDeltaOut")


def _run(name, inputs, attrs):
    """The op's launcher called as a plugin calls it (contract inputs, then attributes in contract order),
    its outputs checked against the contract's shape rule and the QDP descriptors."""
    order = [a.name for a in STAGE_OPS[name].attributes if a.name != "plugin_version"]
    out = launcher(name)(*inputs, *(attrs[a] for a in order))
    out = out if isinstance(out, tuple) else (out,)
    _check_rule(name, inputs, attrs, out)
    return out


def _stages(q, k, v, g, beta, h0, attrs, run):
    w, u, aqk, gcs = run("GatedDeltaPrep", [q, k, v, g, beta], attrs)
    hs, vn, ht = run("GatedDeltaStates", [k, w, u, gcs, h0], attrs)
    (o,) = run("GatedDeltaOut", [q, hs, vn, aqk, gcs], attrs)
    return o, ht


@pytest.mark.parametrize("l2norm", [1, 0])
@pytest.mark.parametrize(
    "B,T,HK,HV,K,V",
    [(2, 70, 2, 4, 16, 8), (1, 1, 1, 2, 16, 16), (1, 128, 1, 1, 32, 16), (2, 5, 2, 2, 16, 32)],
    ids=["T70-gqa2", "T1-gqa2", "T128-exact", "T5-partial"],
)
def test_each_stage_matches_its_reference_fp32(B, T, HK, HV, K, V, l2norm):
    """Each launcher on the reference's own inputs: fp32 intermediates and outputs within 1e-5."""
    q, k, v, g, beta, h0 = make(B, T, HK, HV, K, V, torch.float32, seed=T + l2norm)
    if not l2norm:  # keys of norm ~1, as the delta rule needs (beta |k|^2 <= 2 keeps the state bounded)
        q, k = q * K**-0.5, k * K**-0.5
    a = {"scale": K**-0.5, "use_qk_l2norm": l2norm}
    rprep = ref.naive_gated_delta_prep(q, k, v, g, beta, a["scale"], l2norm)
    for got, want in zip(_run("GatedDeltaPrep", [q, k, v, g, beta], a), rprep, strict=True):
        assert rel_err(got, want) <= 1e-5
    w, u, aqk, gcs = rprep
    rstates = ref.naive_gated_delta_states(k, w, u, gcs, h0, l2norm)
    for got, want in zip(_run("GatedDeltaStates", [k, w, u, gcs, h0], a), rstates, strict=True):
        assert rel_err(got, want) <= 1e-5
    hs, vn, _ = rstates
    (o,) = _run("GatedDeltaOut", [q, hs, vn, aqk, gcs], a)
    assert rel_err(o, ref.naive_gated_delta_out(q, hs, vn, aqk, gcs, a["scale"], l2norm)) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_three_kernels_are_the_gated_delta_rule(dtype):
    """Prep -> States -> Out on the kernels alone, a prompt split 70 + 23 with the state carried, against the
    token-by-token reference over all 93 tokens: fp32 state within 1e-5, the output within bf16 rounding."""
    q, k, v, g, beta, h0 = make(2, 93, 2, 4, 16, 16, dtype, seed=5)
    a = {"scale": 16**-0.5, "use_qk_l2norm": 1}
    ro, rh = naive_gated_delta_rule(q, k, v, g, beta, h0, a["scale"], 1)
    outs, state = [], h0
    for part in (slice(0, 70), slice(70, 93)):
        o, state = _stages(q[:, part], k[:, part], v[:, part], g[:, part], beta[:, part], state, a, _run)
        outs.append(o)
    assert rel_err(state, rh) <= 1e-5
    if dtype == torch.float32:
        assert rel_err(torch.cat(outs, 1), ro) <= 1e-5
    else:
        assert_within_rounding(torch.cat(outs, 1), ro)


def test_dims_that_are_not_powers_of_two_are_refused():
    """The stage outputs are Dk / Dv wide and the kernels' tiles padded powers of two: refused, not garbage
    (the builder lowers only power-of-two heads; every Qwen3.5 head is 128)."""
    q, k, v, g, beta, _ = make(1, 8, 1, 2, 24, 16, torch.float32)
    with pytest.raises(ValueError, match="powers of two"):
        launcher("GatedDeltaPrep")(q, k, v, g, beta, 24**-0.5, 1)


@pytest.mark.parametrize("case", ["bf16_w", "bf16_state", "mixed_activation"])
def test_dtypes_outside_the_contract_are_refused(case):
    """w, u and the state are fp32 in contract v1 (split3's fp32 scratch), as TensorRT's format negotiation
    enforces: a bf16 w used to fail inside Triton's dot ("Both operands must be same dtype"); a bf16 state
    (upcast by the launcher) and a bf16 k beside an fp32 q ran, on inputs no engine accepts. Each is now
    refused by name."""
    q, k, v, g, beta, h0 = make(1, 8, 1, 2, 16, 16, torch.float32)
    w, u, _, gcs = launcher("GatedDeltaPrep")(q, k, v, g, beta, 16**-0.5, 1)
    if case == "mixed_activation":
        with pytest.raises(ValueError, match="^GatedDeltaPrep: input 'k' must be float32, as 'q', got bfloat16$"):
            launcher("GatedDeltaPrep")(q, k.bfloat16(), v, g, beta, 16**-0.5, 1)
        return
    w, h0 = (w.bfloat16(), h0) if case == "bf16_w" else (w, h0.bfloat16())
    name = "w" if case == "bf16_w" else "initial_state"
    with pytest.raises(ValueError, match=f"^GatedDeltaStates: input '{name}' must be float32, got bfloat16$"):
        launcher("GatedDeltaStates")(k, w, u, gcs, h0, 1)


def _bad_chunk_and_head_inputs():
    """One wrong input per case, each message derived by hand from the contract's requirements: Hv=3 value
    heads cannot share Hk=2 key heads; T=8 tokens are NT = cdiv(8, 64) = 1 chunk of C = 64 rows, T=70 2."""
    q, k, v, g, beta, h0 = make(1, 8, 1, 2, 16, 16, torch.float32)
    q70, k70 = make(1, 70, 1, 2, 16, 16, torch.float32)[:2]
    w, u, aqk, gcs = launcher("GatedDeltaPrep")(q, k, v, g, beta, 0.25, 1)
    hs, vn, _ = launcher("GatedDeltaStates")(k, w, u, gcs, h0, 1)
    q3, k3, v3, g3, beta3 = make(1, 8, 2, 3, 16, 16, torch.float32)[:5]
    half = [t[:, :, :, :32] for t in (w, u)] + [gcs[..., :32]]
    return [
        ("GatedDeltaPrep", [q3, k3, v3, g3, beta3, 0.25, 1], "needs Hv % Hk == 0, got Hv=3, Hk=2"),
        ("GatedDeltaStates", [k70, w, u, gcs, h0, 1], r"needs NT == cdiv\(T, 64\), got NT=1, T=70"),
        ("GatedDeltaStates", [k, *half, h0, 1], "needs C == 64, got C=32"),
        ("GatedDeltaOut", [q70, hs, vn, aqk, gcs, 0.25, 1], r"needs NT == cdiv\(T, 64\), got NT=1, T=70"),
    ]


@pytest.mark.parametrize("case", range(4))
def test_chunks_and_heads_outside_the_contract_are_refused(case):
    """The kernels index the chunk tensors by T's chunk count and 64-row chunks, and key heads by
    h // (Hv/Hk): inputs that break that are read past their ends (on the old launchers, under the
    interpreter, 32-row chunks crashed it and 70 tokens over one chunk ran); the contract's requirements
    refuse them by name."""
    name, args, message = _bad_chunk_and_head_inputs()[case]
    with pytest.raises(ValueError, match=f"^{name}: {message} "):
        launcher(name)(*args)
