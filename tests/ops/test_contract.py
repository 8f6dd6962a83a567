"""The contract's derived output dims (MoE's stage ops): grammar, binding, and the values they give."""

import pytest

from deploykit.ops.contract import (
    ALL_OPS,
    CAUSAL_CONV1D,
    GATED_DELTA_OUT,
    GATED_DELTA_PREP,
    GATED_DELTA_RULE,
    GATED_DELTA_STATES,
    MOE,
    MOE_ALIGN,
    MOE_DOWN,
    MOE_GATE_UP,
    MOE_PAIR_DOWN,
    MOE_PAIR_GATE_UP,
    MOE_ROUTE,
    STAGE_OPS,
    AttributeSpec,
    ContractError,
    OperatorArith,
    OpSpec,
    TensorSpec,
    dim_expr_names,
    requirement_holds,
    requirement_names,
)
from deploykit.planner.models import catalog


def test_derived_dims_by_hand():
    # MoEAlign: P = N*K pairs, NB = cdiv(P, block_m) + min(E, P) blocks of block_m slots
    assert MOE_ALIGN.infer_shapes([(3, 8), (3, 2)], {"block_m": 16}) == [(112,), (7,)]  # P 6: 1 + 6 blocks
    assert MOE_ALIGN.infer_shapes([(100, 8), (100, 2)], {"block_m": 16}) == [(336,), (21,)]  # 13 + 8
    assert MOE_ALIGN.infer_shapes([(100, 8), (100, 2)]) == [(336,), (21,)]  # block_m's default is 16
    # MoEPairGateUp: K = top_k, I = I2 // 2
    assert MOE_PAIR_GATE_UP.infer_shapes([(3, 8), (3, 6), (6, 10, 8)], {"top_k": 2}) == [(3, 2, 5), (3, 2), (3, 2)]
    assert MOE_DOWN.infer_shapes([(112, 5), (6, 8, 5), (112,), (7,), (3, 2)]) == [(3, 2, 8)]  # copies only


def test_required_attribute_of_a_derived_dim_is_named():
    with pytest.raises(ValueError, match="'top_k' is required"):
        MOE_PAIR_GATE_UP.infer_shapes([(3, 8), (3, 6), (6, 10, 8)])


@pytest.mark.parametrize("name", sorted(ALL_OPS))
def test_a_missing_input_or_a_dim_too_few_is_named_not_inferred(name):
    """Every op, every input: one dim dropped (the torch fake, ONNX and TensorRT all call infer_shapes), or the
    last input left out. Dims are all 8 so that no symbol is left unbound and only the rank check can fail."""
    op = ALL_OPS[name]
    shapes = [(8,) * len(t.dims) for t in op.inputs]
    attrs = {"top_k": 2}
    assert len(op.infer_shapes(shapes, attrs)) == len(op.outputs)
    for i, t in enumerate(op.inputs):
        short = [*shapes[:i], shapes[i][:-1], *shapes[i + 1:]]
        with pytest.raises(ValueError, match=f"{name}: input '{t.name}' must have rank {len(t.dims)} .* got shape"):
            op.infer_shapes(short, attrs)
    with pytest.raises(ValueError, match=f"{name}: expected {len(op.inputs)} inputs, got {len(op.inputs) - 1}"):
        op.infer_shapes(shapes[:-1], attrs)


def test_symbolic_arithmetic_goes_through_the_adapter():
    """ShapeExpr-like values: operators for + - * //, the adapter's cdiv / min for non-ints."""
    calls = []

    class Sym:
        def __init__(self, s):
            self.s = s

        def __mul__(self, o):
            return Sym(f"({self.s}*{getattr(o, 's', o)})")

        __rmul__ = __mul__

        def __add__(self, o):
            return Sym(f"({self.s}+{getattr(o, 's', o)})")

    def cdiv(a, b):
        calls.append("cdiv")
        return Sym(f"cdiv({getattr(a, 's', a)},{getattr(b, 's', b)})")

    def mn(a, b):
        calls.append("min")
        return Sym(f"min({getattr(a, 's', a)},{getattr(b, 's', b)})")

    slots, blocks = MOE_ALIGN.infer_shapes([(Sym("N"), 8), (Sym("N"), 2)], {"block_m": 16},
                                           OperatorArith(cdiv=cdiv, min=mn))
    assert blocks[0].s == "(cdiv((N*2),16)+min(8,(N*2)))" and slots[0].s == f"({blocks[0].s}*16)"
    assert calls == ["cdiv", "min"]


@pytest.mark.parametrize("expr", ["I2 / 2", "max(N, 1)", "N ** 2", "1.5 * N", "N if N else 1", "I2 % 2"])
def test_expressions_outside_the_grammar_are_rejected(expr):
    with pytest.raises(ValueError, match="outside the grammar"):
        dim_expr_names(expr)


def test_a_derived_dim_must_read_bound_names():
    with pytest.raises(ValueError, match=r"reads unknown names \['J'\]"):
        OpSpec(name="X", torch_name="x", version=1, inputs=(TensorSpec(name="a", dims=("N",), dtype="T"),),
               outputs=(TensorSpec(name="b", dims=("M",), dtype="T"),),
               attributes=(AttributeSpec(name="k", type="int"),), derived=(("M", "N * J + k"),))


def test_every_stage_op_is_a_stage_of_moe_or_gdn_and_binds_every_output_dim():
    stages = {name: op.stage_of for name, op in STAGE_OPS.items()}
    assert stages == {**dict.fromkeys(["MoERoute", "MoEAlign", "MoEGateUp", "MoEDown", "MoEPairGateUp",
                                       "MoEPairDown"], "MoE"),
                      **dict.fromkeys(["GatedDeltaPrep", "GatedDeltaStates", "GatedDeltaOut"], "GatedDeltaRule")}


def test_gdn_stage_shapes_follow_the_64_token_chunks():
    """Hand-derived: 70 tokens are two chunks of 64 (the second padded); 64 tokens one."""
    from deploykit.ops.contract import GATED_DELTA_PREP

    for T, NT in ((70, 2), (64, 1), (1, 1)):
        shapes = GATED_DELTA_PREP.infer_shapes([(2, T, 4, 16), (2, T, 4, 16), (2, T, 8, 32), (2, T, 8), (2, T, 8)])
        assert shapes == [(2, 8, NT, 64, 16), (2, 8, NT, 64, 32), (2, 8, NT, 64, 64), (2, 8, NT, 64)]


def test_dtype_rule_by_hand():
    """GatedDeltaRule: q k v beta are 'T' (q picks it), g and initial_state fp32; outputs: 'T', fp32."""
    good = ["bfloat16", "bfloat16", "bfloat16", "float32", "bfloat16", "float32", "bfloat16", "float32"]
    assert all(GATED_DELTA_RULE.accepts_dtype(pos, good) for pos in range(8))
    for pos, dtype in [(0, "float64"), (0, "int32"), (1, "float16"), (3, "bfloat16"), (5, "float16"),
                       (6, "float32"), (7, "bfloat16")]:
        assert not GATED_DELTA_RULE.accepts_dtype(pos, [*good[:pos], dtype, *good[pos + 1:]]), (pos, dtype)
    assert GATED_DELTA_RULE.accepts_dtype(0, ["float16"])  # the first 'T' may be any activation dtype
    # MoEPairDown: inter, down 'T'; topk_ids int32; topk_weights fp32
    MOE_PAIR_DOWN.check_dtypes(["float16", "float16", "int32", "float32"])
    with pytest.raises(ValueError, match="^MoEPairDown: input 'topk_ids' must be int32, got int64$"):
        MOE_PAIR_DOWN.check_dtypes(["float16", "float16", "int64", "float32"])
    with pytest.raises(ValueError, match="^MoEPairDown: input 'down' must be float16, as 'inter', got float32$"):
        MOE_PAIR_DOWN.check_dtypes(["float16", "float32", "int32", "float32"])


def test_requirements_by_hand():
    """Values worked out by hand; % is a requirement's only (no symbolic adapter has a modulo)."""
    assert requirement_names("1 <= top_k <= E") == ["top_k", "E"]
    assert requirement_names("S == NB * block_m") == ["S", "NB", "block_m"]
    assert requirement_holds("1 <= top_k <= E", {"top_k": 4, "E": 4})
    assert not requirement_holds("1 <= top_k <= E", {"top_k": 0, "E": 4})
    assert not requirement_holds("1 <= top_k <= E", {"top_k": 5, "E": 4})
    assert requirement_holds("Hv % Hk == 0", {"Hv": 32, "Hk": 16})
    assert not requirement_holds("Hv % Hk == 0", {"Hv": 48, "Hk": 32})
    assert requirement_holds("NT == cdiv(T, 64)", {"NT": 2, "T": 65})
    assert not requirement_holds("NT == cdiv(T, 64)", {"NT": 2, "T": 64})
    assert requirement_holds("S == NB * block_m", {"S": 112, "NB": 7, "block_m": 16})


@pytest.mark.parametrize(
    "expr", ["Hv % Hk", "Hv != Hk", "Hv / Hk == 2", "Hv == Hk or Hk == 1", "max(Hv, 1) == 1"],
    ids=["not a comparison", "!=", "/", "or", "max"],
)
def test_requirements_outside_their_grammar_are_rejected(expr):
    with pytest.raises(ValueError, match="not a comparison|outside the grammar"):
        requirement_names(expr)


def test_a_requirement_must_read_bound_names():
    with pytest.raises(ValueError, match=r"requirement 'N % J == 0' reads unknown names \['J'\]") as err:
        OpSpec(name="X", torch_name="x", version=1, inputs=(TensorSpec(name="a", dims=("N",), dtype="T"),),
               outputs=(TensorSpec(name="b", dims=("N",), dtype="T"),), attributes=(),
               requires=(("N % J == 0", "why"),))
    assert not isinstance(err.value, ContractError)


def test_requirements_are_checked_only_on_concrete_dims():
    """infer_shapes without check (the fakes, ONNX inference and TensorRT: their build-time check is
    check_static's) gives shapes; a launcher's (check=True) refuses."""
    assert MOE_ROUTE.infer_shapes([(3, 4)], {"top_k": 5}) == [(3, 5), (3, 5)]
    with pytest.raises(ValueError, match="^MoERoute: needs 1 <= top_k <= E, got top_k=5, E=4 "):
        MOE_ROUTE.infer_shapes([(3, 4)], {"top_k": 5}, check=True)


def test_check_static_decides_what_the_fixed_dims_decide():
    """A graph fixes the model dims (heads, head dims, experts, widths) but not batch or tokens: a requirement
    on fixed dims is checked where the graph is built, one that reads a dynamic dim is left to the launcher."""
    qk, gb3 = ("B", "T", 2, 8), ("B", "T", 3)
    with pytest.raises(ValueError, match=r"^GatedDeltaRule: needs Hv % Hk == 0, got Hv=3, Hk=2 \(each key"):
        GATED_DELTA_RULE.check_static([qk, qk, ("B", "T", 3, 8), gb3, gb3, ("B", 3, 8, 8)])
    k, state = ("B", "T", 2, 16), ("B", 4, 16, 8)
    chunk = ("B", 4, "NT", 64)  # T and NT dynamic: NT == cdiv(T, 64) cannot be decided yet; C == 64 can
    GATED_DELTA_STATES.check_static([k, (*chunk, 16), (*chunk, 8), chunk, state])
    half = ("B", 4, "NT", 32)
    with pytest.raises(ValueError, match=r"^GatedDeltaStates: needs C == 64, got C=32 "):
        GATED_DELTA_STATES.check_static([k, (*half, 16), (*half, 8), half, state])
    one = (2, 4, 1, 64)  # 70 tokens fixed: 2 chunks, not 1
    with pytest.raises(ValueError, match=r"^GatedDeltaStates: needs NT == cdiv\(T, 64\), got NT=1, T=70 "):
        GATED_DELTA_STATES.check_static([(2, 70, 2, 16), (*one, 16), (*one, 8), one, (2, 4, 16, 8)])


def test_check_static_compares_fixed_sizes_only():
    """Two inputs that fix one symbol to two sizes are refused; names (dynamic dims) are never compared, since
    two names may still be one size when the engine runs. The error is a ContractError: the one a build turns
    into a user error (a malformed contract stays a plain ValueError, a bug to see in full)."""
    moe = [("N", 16), ("M", 4), (4, 12, 16), (4, 16, 6)]
    MOE.check_static(moe, {"top_k": 2})
    with pytest.raises(ContractError, match="^MoE: input 'down' has H=32, but an earlier input has H=16$"):
        MOE.check_static([*moe[:3], (4, 32, 6)], {"top_k": 2})
    with pytest.raises(ContractError, match=r"^MoE: needs I2 == 2 \* I, got I2=12, I=5 "):
        MOE.check_static([*moe[:3], (4, 16, 5)], {"top_k": 2})
    with pytest.raises(ContractError, match="^MoE: needs 1 <= top_k <= E, got top_k=5, E=4 "):
        MOE.check_static(moe, {"top_k": 5})
    with pytest.raises(ContractError, match="^MoE: attribute 'top_k' is required"):
        MOE.check_static(moe)


def _qwen35_inputs(text, N: int = 64, T: int = 100, B: int = 2):
    """Every contract op's input shapes for one checkpoint, from its config.json fields alone (not from the
    contract): N tokens for MoE, B sequences of T tokens for Gated DeltaNet."""
    hk, hv = text.linear_num_key_heads, text.linear_num_value_heads
    dk, dv, kw = text.linear_key_head_dim, text.linear_value_head_dim, text.linear_conv_kernel_dim
    conv_channels = 2 * hk * dk + hv * dv  # conv_dim = 2 key_dim + value_dim (qwen35.md section 3)
    nt = -(-T // 64)
    qk, v, gb = (B, T, hk, dk), (B, T, hv, dv), (B, T, hv)
    chunk = (B, hv, nt, 64)
    shapes = {
        GATED_DELTA_RULE: [qk, qk, v, gb, gb, (B, hv, dk, dv)],
        CAUSAL_CONV1D: [(B, conv_channels, T), (B, conv_channels, kw - 1), (conv_channels, kw)],
        GATED_DELTA_PREP: [qk, qk, v, gb, gb],
        GATED_DELTA_STATES: [qk, (*chunk, dk), (*chunk, dv), chunk, (B, hv, dk, dv)],
        GATED_DELTA_OUT: [qk, (B, hv, nt, dk, dv), (*chunk, dv), (*chunk, 64), chunk],
    }
    if text.num_experts:
        E, k = text.num_experts, text.num_experts_per_tok
        H, inter = text.hidden_size, text.moe_intermediate_size
        nb = -(-N * k // 16) + min(E, N * k)  # MoEAlign's bound at block_m = 16, by hand
        pairs, slots, blocks = (N, k), (nb * 16,), (nb,)
        shapes |= {
            MOE: [(N, H), (N, E), (E, 2 * inter, H), (E, H, inter)],
            MOE_ROUTE: [(N, E)],
            MOE_ALIGN: [(N, E), pairs],
            MOE_PAIR_GATE_UP: [(N, H), (N, E), (E, 2 * inter, H)],
            MOE_PAIR_DOWN: [(N, k, inter), (E, H, inter), pairs, pairs],
            MOE_GATE_UP: [(N, H), (E, 2 * inter, H), slots, blocks],
            MOE_DOWN: [(nb * 16, inter), (E, H, inter), slots, blocks, pairs],
        }
    return shapes, {"top_k": text.num_experts_per_tok or 1, "block_m": 16}


@pytest.mark.parametrize("spec", catalog(), ids=lambda s: s.name)
def test_every_shipped_checkpoint_meets_every_requirement(spec):
    """A requirement too strict would refuse a real model: every Qwen3.5 checkpoint's shapes pass every check
    of every op it uses; the same shapes with one more value head than the key heads divide do not."""
    shapes, attrs = _qwen35_inputs(spec.text)
    for op, inputs in shapes.items():
        assert len(op.infer_shapes(inputs, attrs, check=True)) == len(op.outputs), op.name
    bad = spec.text.model_copy(update={"linear_num_value_heads": spec.text.linear_num_value_heads + 1})
    inputs = _qwen35_inputs(bad)[0][GATED_DELTA_RULE]
    with pytest.raises(ValueError, match="^GatedDeltaRule: needs Hv % Hk == 0"):
        GATED_DELTA_RULE.infer_shapes(inputs, attrs, check=True)
