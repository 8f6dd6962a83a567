"""deploykit's op contract: the custom ops that the reference model, the ONNX exporter and the
TensorRT plugins all implement. This module is the single source of truth for their names, versions,
inputs, outputs, attributes, dtypes and shape rules.

Every output dimension is named by a symbol that also names an input dimension, so one rule answers
"what is the output shape?" for the torch fake implementation, ONNX shape inference and the TensorRT
plugin's `get_output_shapes` alike (see `output_dims`). What the dims cannot say and a kernel relies on
(Hv a multiple of Hk, S = NB * block_m, ...) is each op's `requires`, which every launcher checks, and
ONNX shape inference and the TensorRT descriptors check on the dims a graph fixes (`check_static`).

Symbols: B batch, T new tokens, Hk key heads, Hv value heads, Dk key head dim, Dv value head dim,
C conv channels, K conv kernel width, N tokens (flattened batch x time), H hidden size, E experts,
I expert intermediate size. dtype "T" is the activation dtype (float32, float16 or bfloat16).

Ops (domain `deploykit`, version 1):

GatedDeltaRule (torch: deploykit::gated_delta_rule)
    q [B,T,Hk,Dk] T, k [B,T,Hk,Dk] T, v [B,T,Hv,Dv] T, g [B,T,Hv] fp32 (log decay, <= 0),
    beta [B,T,Hv] T, initial_state [B,Hv,Dk,Dv] fp32
    -> output [B,T,Hv,Dv] T, final_state [B,Hv,Dk,Dv] fp32
    Per value head h (key head h // (Hv/Hk): each key head serves Hv/Hk consecutive value heads):
        q <- l2norm(q) * scale, k <- l2norm(k)        (when use_qk_l2norm; l2norm(x) = x * rsqrt(sum x^2 + 1e-6))
        S <- S * exp(g_t);  S <- S + k_t (beta_t (v_t - k_t^T S))^T;  o_t = q_t^T S   (read after update)
    Math in fp32. Hv must be a multiple of Hk. Matches transformers' torch_recurrent_gated_delta_rule.

CausalConv1d (torch: deploykit::causal_conv1d; in ONNX it lowers to standard Concat + Conv + Slice)
    x [B,C,T] T, conv_state [B,C,K-1] T, weight [C,K] T -> output [B,C,T] T, new_conv_state [B,C,K-1] T
    Depthwise causal convolution over concat(conv_state, x) along time, followed by SiLU when
    activation == "silu"; new_conv_state is the last K-1 columns of that concatenation.

MoE (torch: deploykit::moe)
    hidden [N,H] T, router_logits [N,E] T, gate_up [E,2I,H] T, down [E,H,I] T -> output [N,H] T
    p = softmax(router_logits in fp32); w, idx = topk(p, top_k) (equal p: lower expert id first, as ONNX
    TopK); w /= sum(w) when norm_topk_prob;
    output[n] = sum_j w[n,j] * down[idx_j] @ (silu(gate_up[idx_j][:I] @ x) * (gate_up[idx_j][I:] @ x)).
    The shared expert is not part of the op (it is plain MLP math in the graph).

MoE's stage ops (STAGE_OPS: MoEPairGateUp, MoEPairDown, MoERoute, MoEAlign, MoEGateUp, MoEDown) and
GatedDeltaRule's (GatedDeltaPrep, GatedDeltaStates, GatedDeltaOut) are one kernel each. Exported models never
contain them: the builder may put them in place of a MoE or GatedDeltaRule node (deploykit/build/lower.py) so
that every TensorRT plugin is an ahead-of-time kernel. Their outputs have
derived dims (`OpSpec.derived`, e.g. K = top_k, I = I2 // 2), computed by the same `infer_shapes` for every
consumer; ids and slots are int32.
"""

from __future__ import annotations

import ast
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

DOMAIN = "deploykit"
OP_SET_VERSION = 1

ACTIVATION_DTYPES = ("float32", "float16", "bfloat16")


class ContractError(ValueError):
    """Inputs the contract refuses (count, rank, dtype, a missing attribute, sizes that disagree, a failed
    requirement), as opposed to a malformed contract (plain ValueError): the error a caller turns into a
    one-line user error, e.g. `deploykit build` on a graph its kernels would refuse."""


DType = Literal["T", "float32", "int32"]
"""'T' = the op's activation dtype (one of ACTIVATION_DTYPES); 'float32' / 'int32' = always that dtype."""


class TensorSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    dims: tuple[str, ...]
    dtype: DType
    doc: str = ""


class AttributeSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    type: Literal["int", "float", "string"]
    default: int | float | str | None = None  # None = required
    doc: str = ""


class OperatorArith:
    """Dimension arithmetic through Python's operators: ints, and symbolic values that overload + - * //
    (tensorrt.plugin's ShapeExpr) given their own `cdiv` and `min` (used when an operand is not an int).
    TensorRT's IExprBuilder gets its own adapter (plugins/tensorrt_v3.py); ONNX dims theirs (export/schemas.py)."""

    def __init__(self, cdiv=None, min=None, const=int):
        self._cdiv, self._min, self.const = cdiv, min, const

    add = staticmethod(lambda a, b: a + b)
    sub = staticmethod(lambda a, b: a - b)
    mul = staticmethod(lambda a, b: a * b)
    floordiv = staticmethod(lambda a, b: a // b)

    def cdiv(self, a, b):
        return -(-a // b) if isinstance(a, int) and isinstance(b, int) or self._cdiv is None else self._cdiv(a, b)

    def min(self, a, b):
        return min(a, b) if isinstance(a, int) and isinstance(b, int) or self._min is None else self._min(a, b)


INT_ARITH = OperatorArith()


class KnownIntArith:
    """Ints compute; an operand that is not an int (a symbolic ONNX dim, a dim unknown there, a dynamic dim to
    `OpSpec.check_static`) makes the result unknown (None)."""

    @staticmethod
    def const(v):
        return int(v)

    def _op(fn):
        return staticmethod(lambda a, b: fn(a, b) if isinstance(a, int) and isinstance(b, int) else None)

    add, sub, mul = _op(lambda a, b: a + b), _op(lambda a, b: a - b), _op(lambda a, b: a * b)
    floordiv, cdiv, min = _op(lambda a, b: a // b), _op(lambda a, b: -(-a // b)), _op(min)


KNOWN_INT_ARITH = KnownIntArith()
_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.FloorDiv: "floordiv"}
_CALLS = ("cdiv", "min")
# A requirement (OpSpec.requires) is a chain of comparisons of dim expressions, which may also take a % b:
# it is evaluated on concrete ints only, so no symbolic adapter needs a modulo (TensorRT's has none).
_COMPARES = (ast.Eq, ast.LtE, ast.Lt)
_REQUIREMENT_BINOPS = (*_BINOPS, ast.Mod)


def _walk_names(node: ast.AST, expr: str, binops, names: set[str]) -> None:
    if isinstance(node, ast.BinOp) and type(node.op) in binops:
        _walk_names(node.left, expr, binops, names), _walk_names(node.right, expr, binops, names)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS \
            and len(node.args) == 2 and not node.keywords:
        _walk_names(node.args[0], expr, binops, names), _walk_names(node.args[1], expr, binops, names)
    elif isinstance(node, ast.Name):
        names.add(node.id)
    elif not (isinstance(node, ast.Constant) and type(node.value) is int):
        raise ValueError(f"dim expression {expr!r}: {ast.dump(node)} is outside the grammar")


def dim_expr_names(expr: str) -> set[str]:
    """Names an output-dim expression reads; raises ValueError outside the grammar (ints, names, + - * //,
    cdiv(a, b), min(a, b))."""
    names: set[str] = set()
    _walk_names(ast.parse(expr, mode="eval").body, expr, _BINOPS, names)
    return names


@cache
def _compile_requirement(expr: str) -> tuple[Any, tuple[str, ...]]:
    """(code, names in reading order), once per requirement: a launcher checks them on every call."""
    tree = ast.parse(expr, mode="eval")
    node = tree.body
    if not (isinstance(node, ast.Compare) and all(isinstance(op, _COMPARES) for op in node.ops)):
        raise ValueError(f"requirement {expr!r}: not a comparison (==, <=, <) of dim expressions")
    names: set[str] = set()
    for side in (node.left, *node.comparators):
        _walk_names(side, expr, _REQUIREMENT_BINOPS, names)
    ordered = [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in names]
    return compile(tree, f"<requirement {expr}>", "eval"), tuple(dict.fromkeys(ordered))


def requirement_names(expr: str) -> list[str]:
    """Names a requirement reads, in reading order; raises ValueError outside its grammar: dim expressions
    (and a % b) joined by ==, <= or <, e.g. "Hv % Hk == 0", "1 <= top_k <= E"."""
    return list(_compile_requirement(expr)[1])


def eval_dim(expr: str, env: dict[str, Any], arith: Any = INT_ARITH) -> Any:
    """Value of a dim expression, names looked up in `env` (already in `arith`'s domain)."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.BinOp):
            return getattr(arith, _BINOPS[type(node.op)])(ev(node.left), ev(node.right))
        if isinstance(node, ast.Call):
            return getattr(arith, node.func.id)(ev(node.args[0]), ev(node.args[1]))
        if isinstance(node, ast.Name):
            return env[node.id]
        return arith.const(node.value)

    dim_expr_names(expr)
    return ev(ast.parse(expr, mode="eval").body)


_REQUIREMENT_SCOPE = {"__builtins__": {}, "cdiv": INT_ARITH.cdiv, "min": min}  # the grammar's calls, nothing else


def requirement_holds(expr: str, env: dict[str, int]) -> bool:
    """A requirement on concrete int dims and attributes: Python's own int arithmetic and comparison chain,
    on the grammar-checked expression."""
    return bool(eval(_compile_requirement(expr)[0], _REQUIREMENT_SCOPE, env))


class OpSpec(BaseModel):
    """One op of the contract: the ONNX node, torch custom op and TensorRT plugin share it."""

    model_config = ConfigDict(frozen=True)

    name: str  # ONNX op_type and TensorRT plugin name
    torch_name: str  # torch.library op name in the `deploykit` namespace
    version: int  # ONNX since_version and TensorRT plugin_version
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    attributes: tuple[AttributeSpec, ...]
    in_onnx_domain: bool = True  # False: lowered to standard ONNX ops by the exporter
    # Output dims that are not input dims: (symbol, expression over input dims, earlier derived symbols and
    # int attributes), e.g. ("I", "I2 // 2"). Evaluated by `infer_shapes` for every consumer of the rule.
    derived: tuple[tuple[str, str], ...] = ()
    # What the dims alone cannot say and a kernel relies on: (requirement, why), e.g. ("Hv % Hk == 0",
    # "each key head serves Hv/Hk value heads"), over input dims, derived dims and int attributes. Checked on
    # concrete dims by `infer_shapes(check=True)`, i.e. by every launcher before its kernel runs.
    requires: tuple[tuple[str, str], ...] = ()
    stage_of: str | None = None  # one kernel of a multi-kernel op, emitted by the builder's lowering only
    doc: str = ""

    @model_validator(mode="after")
    def _every_output_dim_is_bound(self) -> OpSpec:
        bound = {d for t in self.inputs for d in t.dims}
        ints = {a.name for a in self.attributes if a.type == "int"}
        for sym, expr in self.derived:
            unknown = dim_expr_names(expr) - bound - ints
            if unknown:
                raise ValueError(f"{self.name}: derived dim {sym} = {expr!r} reads unknown names {sorted(unknown)}")
            bound.add(sym)
        for expr, _ in self.requires:
            unknown = set(requirement_names(expr)) - bound - ints
            if unknown:
                raise ValueError(f"{self.name}: requirement {expr!r} reads unknown names {sorted(unknown)}")
        for out in self.outputs:
            missing = [d for d in out.dims if d not in bound]
            if missing:
                raise ValueError(f"{self.name}.{out.name}: dims {missing} are not dims of any input")
        return self

    @property
    def qualified_name(self) -> str:
        return f"{DOMAIN}::{self.name}"

    @property
    def plugin_version(self) -> str:
        return str(self.version)

    @property
    def activation_input(self) -> int:
        """The input whose dtype every 'T' tensor takes: the first 'T'-typed one (the torch fake, ONNX schema,
        TensorRT plugins and stage launchers all read it here)."""
        return next(i for i, t in enumerate(self.inputs) if t.dtype == "T")

    def output_dtypes(self, activation_dtype: str) -> list[str]:
        return [activation_dtype if o.dtype == "T" else o.dtype for o in self.outputs]

    def accepts_dtype(self, pos: int, dtypes: list[str]) -> bool:
        """Whether tensor `pos` (inputs, then outputs) may have dtypes[pos] given the earlier ones: THE dtype
        rule, read by TensorRT's format negotiation (plugins/tensorrt_v3.py) and the stage launchers alike. A
        fixed dtype is exact; the first 'T' input picks one of ACTIVATION_DTYPES and every other 'T' follows it."""
        want = (*self.inputs, *self.outputs)[pos].dtype
        if want != "T":
            return dtypes[pos] == want
        first_t = self.activation_input  # an input, so earlier than every output
        if pos == first_t:
            return dtypes[pos] in ACTIVATION_DTYPES
        return dtypes[pos] == dtypes[first_t]

    def check_dtypes(self, input_dtypes: list[str]) -> None:
        """The inputs' dtypes against the contract; raises ContractError naming the first wrong one. A
        launcher that took others would run what its TensorRT plugin refuses (a JIT test passing on inputs no
        engine accepts), or fail inside Triton with its own message (int64 ids: "histogram only supports
        32-bit integer input")."""
        for pos, spec in enumerate(self.inputs):
            if not self.accepts_dtype(pos, input_dtypes):
                first_t = self.activation_input
                want = (f"one of {', '.join(ACTIVATION_DTYPES)}" if pos == first_t
                        else f"{input_dtypes[first_t]}, as '{self.inputs[first_t].name}'" if spec.dtype == "T"
                        else spec.dtype)
                raise ContractError(f"{self.name}: input '{spec.name}' must be {want}, "
                                    f"got {input_dtypes[pos]}")

    def int_attributes(self, attrs: dict[str, Any] | None = None) -> dict[str, int]:
        """The int attributes a derived dim or a requirement may read: given values over contract defaults."""
        given = attrs or {}
        out = {}
        for a in self.attributes:
            if a.type == "int":
                value = given.get(a.name, a.default)
                if value is None:
                    raise ContractError(f"{self.name}: attribute '{a.name}' is required (it has no "
                                        "default)")  # a derived dim or a requirement reads it
                out[a.name] = int(value)
        return out

    def check_ranks(self, input_shapes: list[tuple]) -> None:
        """The input count and ranks, checked before any symbol is bound: a zip over a short shape would bind
        too few dims and give a wrong output shape with no error (in torch, ONNX and TensorRT alike)."""
        if len(input_shapes) != len(self.inputs):
            raise ContractError(f"{self.name}: expected {len(self.inputs)} inputs, got {len(input_shapes)}")
        for spec, shape in zip(self.inputs, input_shapes, strict=True):
            if len(shape) != len(spec.dims):
                got = f"shape {list(shape)}" if all(isinstance(d, int) for d in shape) else f"rank {len(shape)}"
                raise ContractError(f"{self.name}: input '{spec.name}' must have rank {len(spec.dims)} "
                                    f"{list(spec.dims)}, got {got}")

    def infer_shapes(self, input_shapes: list[tuple], attrs: dict[str, Any] | None = None,
                     arith: Any = INT_ARITH, *, check: bool = False) -> list[tuple]:
        """Output shapes from input shapes: THE shape rule. An output dim that is an input dim is that input's
        value itself (int, symbolic dim, TensorRT expression), taken from the first input that has it; a derived
        dim is computed with `arith`. `check` (concrete int dims only: a launcher's, whose kernel trusts
        them): a symbol that another input gives another size, or a failed requirement (`requires`), is a
        ContractError that names both sizes, or the requirement, its values and why it is needed."""
        env = self._bind(input_shapes, attrs, arith, check)
        if check:
            self._check_requirements(env, known_only=False)
        return [tuple(env[d] for d in out.dims) for out in self.outputs]

    def check_static(self, input_shapes: list[tuple], attrs: dict[str, Any] | None = None) -> None:
        """A launcher's checks where a graph is built, on the dims fixed there: the ints of `input_shapes`
        (anything else, e.g. a dynamic token count, is not known yet). Sizes that disagree, and every
        requirement whose dims are all known, raise infer_shapes' ContractError. The ONNX schema and both
        TensorRT registrations run it, so a graph its kernels would refuse fails at export or build, not
        in a running engine (an ahead-of-time kernel checks nothing)."""
        static = [tuple(d if isinstance(d, int) else None for d in shape) for shape in input_shapes]
        self._check_requirements(self._bind(static, attrs, KNOWN_INT_ARITH, check=True), known_only=True)

    def _bind(self, input_shapes: list[tuple], attrs: dict[str, Any] | None, arith: Any,
              check: bool) -> dict[str, Any]:
        """Every symbol's value: input dims, then (where needed) int attributes and derived dims."""
        self.check_ranks(input_shapes)
        env: dict[str, Any] = {}
        for spec, shape in zip(self.inputs, input_shapes, strict=True):
            for sym, size in zip(spec.dims, shape, strict=True):
                known = env.get(sym)
                if known is None:  # first seen, or unknown so far (None: an ONNX dim without value or name)
                    env[sym] = size
                elif check and size is not None and known != size:
                    raise ContractError(f"{self.name}: input '{spec.name}' has {sym}={size}, "
                                        f"but an earlier input has {sym}={known}")
        if self.derived or (check and self.requires):
            env.update({k: arith.const(v) for k, v in self.int_attributes(attrs).items() if k not in env})
            for sym, expr in self.derived:
                env[sym] = eval_dim(expr, env, arith)
        return env

    def _check_requirements(self, env: dict[str, Any], known_only: bool) -> None:
        for expr, why in self.requires:
            if known_only and not all(isinstance(env[n], int) for n in requirement_names(expr)):
                continue
            if not requirement_holds(expr, env):
                values = ", ".join(f"{n}={env[n]}" for n in requirement_names(expr))
                raise ContractError(f"{self.name}: needs {expr}, got {values} ({why})")


def _t(name: str, dims: str, dtype: DType = "T", doc: str = "") -> TensorSpec:
    return TensorSpec(name=name, dims=tuple(dims.split(",")), dtype=dtype, doc=doc)


PLUGIN_VERSION_ATTR = AttributeSpec(
    name="plugin_version", type="string", default="1",
    doc="TensorRT plugin version the node maps to (the ONNX parser reads this attribute).",
)

_HEADS = ("Hv % Hk == 0", "each key head serves Hv/Hk consecutive value heads")

GATED_DELTA_RULE = OpSpec(
    name="GatedDeltaRule",
    torch_name="gated_delta_rule",
    version=1,
    inputs=(
        _t("q", "B,T,Hk,Dk"),
        _t("k", "B,T,Hk,Dk"),
        _t("v", "B,T,Hv,Dv"),
        _t("g", "B,T,Hv", "float32", "log decay per token and value head (<= 0)"),
        _t("beta", "B,T,Hv", doc="write strength in (0, 1)"),
        _t("initial_state", "B,Hv,Dk,Dv", "float32"),
    ),
    outputs=(
        _t("output", "B,T,Hv,Dv"),
        _t("final_state", "B,Hv,Dk,Dv", "float32"),
    ),
    attributes=(
        AttributeSpec(name="scale", type="float", doc="query scale, Dk**-0.5 for Qwen3.5"),
        AttributeSpec(name="use_qk_l2norm", type="int", default=1, doc="l2-normalise q and k inside the op"),
        PLUGIN_VERSION_ATTR,
    ),
    requires=(_HEADS,),
    doc="Gated delta rule over T tokens with an fp32 recurrent state (Gated DeltaNet core).",
)

CAUSAL_CONV1D = OpSpec(
    name="CausalConv1d",
    torch_name="causal_conv1d",
    version=1,
    inputs=(
        _t("x", "B,C,T"),
        _t("conv_state", "B,C,Km1", doc="the last K-1 inputs before x (zeros at the start)"),
        _t("weight", "C,K"),
    ),
    outputs=(
        _t("output", "B,C,T"),
        _t("new_conv_state", "B,C,Km1"),
    ),
    attributes=(
        AttributeSpec(name="activation", type="string", default="silu", doc="'silu' or 'none'"),
        PLUGIN_VERSION_ATTR,
    ),
    in_onnx_domain=False,
    requires=(("Km1 == K - 1", "conv_state holds the K-1 inputs before x, for a kernel K wide"),),
    doc="Depthwise causal conv1d with carried state (Gated DeltaNet's short conv).",
)

_TOP_K_FITS = ("1 <= top_k <= E", "each token takes top_k distinct experts of the E")

MOE = OpSpec(
    name="MoE",
    torch_name="moe",
    version=1,
    inputs=(
        _t("hidden", "N,H"),
        _t("router_logits", "N,E"),
        _t("gate_up", "E,I2,H", doc="fused [gate; up] expert weights, rows 0..I-1 gate, I..2I-1 up"),
        _t("down", "E,H,I"),
    ),
    outputs=(_t("output", "N,H"),),
    attributes=(
        AttributeSpec(name="top_k", type="int"),
        AttributeSpec(name="norm_topk_prob", type="int", default=1, doc="renormalise the top-k weights"),
        PLUGIN_VERSION_ATTR,
    ),
    requires=(("I2 == 2 * I", "gate_up is [gate; up]: 2 I rows, for down's I columns"), _TOP_K_FITS),
    doc="Routed experts: softmax router, top-k, SwiGLU experts, weighted sum (shared expert excluded).",
)

# MoE's single-kernel stages. The exported model keeps one MoE node (ONNX Runtime validates it through its
# function body); the builder may replace it with one of two stage sequences (deploykit/build/lower.py), so
# that every TensorRT plugin is one kernel, as an ahead-of-time (Python-free) plugin must be:
#   pairs   (a few tokens): MoEPairGateUp -> MoEPairDown
#   grouped (any count):    MoERoute -> MoEAlign -> MoEGateUp -> MoEDown -> ReduceSum(axis 1) -> Cast
# Pair p = n * K + j is token n's j-th expert. Slots group pairs by expert, each group padded to block_m rows;
# padding slots hold P = N * K. The naive references are in deploykit/ops/moe.py.
_TOP_K = AttributeSpec(name="top_k", type="int")
_NORM = AttributeSpec(name="norm_topk_prob", type="int", default=1, doc="renormalise the top-k weights")
_BLOCK_M = AttributeSpec(name="block_m", type="int", default=16,
                         doc="rows per expert block (a multiple of 16, the smallest tensor-core tile)")
_I_FROM_GATE_UP = ("I", "I2 // 2")
_GATE_UP_ROWS = ("I2 % 2 == 0", "gate_up is [gate; up]: 2 I rows")
_TILE_M = "a block is one tensor-core tile's M rows: a multiple of 16"
_SLOT_BLOCKS = (
    ("16 <= block_m", _TILE_M),
    ("block_m % 16 == 0", _TILE_M),
    ("S == NB * block_m", "pass MoEAlign's two outputs and the block_m it was given"),
)
_ids = _t("topk_ids", "N,K", "int32", "expert of each pair (token n's j-th choice)")
_weights = _t("topk_weights", "N,K", "float32", "routing weight of each pair")
_slots = _t("slot_pair", "S", "int32", "pair of each slot, grouped by expert; P = padding")
_blocks = _t("block_expert", "NB", "int32", "expert of each block of block_m slots; E = unused block")

MOE_PAIR_GATE_UP = OpSpec(
    name="MoEPairGateUp", torch_name="moe_pair_gate_up", version=1, stage_of="MoE",
    inputs=(_t("hidden", "N,H"), _t("router_logits", "N,E"), _t("gate_up", "E,I2,H")),
    outputs=(_t("inter", "N,K,I", doc="silu(gate) * up of each pair"), _ids, _weights),
    attributes=(_TOP_K, _NORM, PLUGIN_VERSION_ATTR),
    derived=(("K", "top_k"), _I_FROM_GATE_UP),
    requires=(_GATE_UP_ROWS, _TOP_K_FITS),
    doc="Routes each token and runs its k gate/up GEMVs (one program per pair and I tile).",
)
MOE_PAIR_DOWN = OpSpec(
    name="MoEPairDown", torch_name="moe_pair_down", version=1, stage_of="MoE",
    inputs=(_t("inter", "N,K,I"), _t("down", "E,H,I"), _ids, _weights),
    outputs=(_t("output", "N,H"),),
    attributes=(PLUGIN_VERSION_ATTR,),
    doc="Each token's k down GEMVs, weighted and summed in a fixed order.",
)
MOE_ROUTE = OpSpec(
    name="MoERoute", torch_name="moe_route", version=1, stage_of="MoE",
    inputs=(_t("router_logits", "N,E"),),
    outputs=(_ids, _weights),
    attributes=(_TOP_K, _NORM, PLUGIN_VERSION_ATTR),
    derived=(("K", "top_k"),),
    requires=(_TOP_K_FITS,),
    doc="fp32 softmax, top-k (ties: lower expert id), optional renormalisation.",
)
MOE_ALIGN = OpSpec(
    name="MoEAlign", torch_name="moe_align", version=1, stage_of="MoE",
    inputs=(_t("router_logits", "N,E", doc="read for its shape only (E)"), _ids),
    outputs=(_slots, _blocks),
    attributes=(_BLOCK_M, PLUGIN_VERSION_ATTR),
    # each expert that is hit adds at most one partly filled block: a bound known before the routing is
    derived=(("NB", "cdiv(N * K, block_m) + min(E, N * K)"), ("S", "NB * block_m")),
    doc="Groups the pairs by expert (stable), pads each group to block_m slots, maps blocks to experts.",
)
MOE_GATE_UP = OpSpec(
    name="MoEGateUp", torch_name="moe_gate_up", version=1, stage_of="MoE",
    inputs=(_t("hidden", "N,H"), _t("gate_up", "E,I2,H"), _slots, _blocks),
    outputs=(_t("inter", "S,I", doc="silu(gate) * up per slot (padding slots: unspecified)"),),
    attributes=(_TOP_K, _BLOCK_M, PLUGIN_VERSION_ATTR),
    derived=(_I_FROM_GATE_UP,),
    requires=(_GATE_UP_ROWS, *_SLOT_BLOCKS),
    doc="Grouped gate/up GEMM: one block_m-row tile of one expert per program row.",
)
MOE_DOWN = OpSpec(
    name="MoEDown", torch_name="moe_down", version=1, stage_of="MoE",
    inputs=(_t("inter", "S,I"), _t("down", "E,H,I"), _slots, _blocks, _weights),
    outputs=(_t("pair_out", "N,K,H", "float32", "weight * expert output of each pair, token order"),),
    attributes=(_BLOCK_M, PLUGIN_VERSION_ATTR),
    requires=_SLOT_BLOCKS,
    doc="Grouped down GEMM, scaled by the routing weights and scattered back to pair order.",
)

# GatedDeltaRule's single-kernel stages: fla's partition of the chunked form (the launcher's "split3" mode).
# Chunk-parallel prep, the sequential state scan, chunk-parallel output, in chunks of C = 64 tokens (NT of them).
# Rows past T pad the last chunk: there w = u = aqk = vn = 0 and gcs repeats the last real token's value. The
# builder may put them in place of a GatedDeltaRule node for prompts of 64 tokens or more (deploykit/build/
# lower.py). Naive references: deploykit/ops/gated_delta_rule/stages.py.
GDN_CHUNK = 64  # tokens per chunk: fla's and transformers' chunk size (deploykit/ops/gated_delta_rule/chunk.py)
_SCALE = AttributeSpec(name="scale", type="float", doc="query scale, Dk**-0.5 for Qwen3.5")
_L2NORM = AttributeSpec(name="use_qk_l2norm", type="int", default=1, doc="l2-normalise q and k inside the op")
_q, _k = _t("q", "B,T,Hk,Dk"), _t("k", "B,T,Hk,Dk")
_w = _t("w", "B,Hv,NT,C,Dk", "float32", "A (k beta exp(gc)); A = (I + strict_tril(beta K K^T o decay))^-1")
_u = _t("u", "B,Hv,NT,C,Dv", "float32", "A (v beta)")
_aqk = _t("aqk", "B,Hv,NT,C,C", "float32", "tril(Q K^T o decay), q normalised and scaled")
_gcs = _t("gcs", "B,Hv,NT,C", "float32", "cumulative log decay from each chunk's start")
_hs = _t("hs", "B,Hv,NT,Dk,Dv", "float32", "the state each chunk starts from")
_vn = _t("vn", "B,Hv,NT,C,Dv", "float32", "each chunk's deltas u - w S")

_CHUNKS = (
    (f"NT == cdiv(T, {GDN_CHUNK})", "the chunk tensors of GatedDeltaPrep for these T tokens"),
    (f"C == {GDN_CHUNK}", "the chunk tensors of GatedDeltaPrep, in chunks of 64 tokens"),
)

GATED_DELTA_PREP = OpSpec(
    name="GatedDeltaPrep", torch_name="gated_delta_prep", version=1, stage_of="GatedDeltaRule",
    inputs=(_q, _k, _t("v", "B,T,Hv,Dv"), _t("g", "B,T,Hv", "float32"), _t("beta", "B,T,Hv")),
    outputs=(_w, _u, _aqk, _gcs),
    attributes=(_SCALE, _L2NORM, PLUGIN_VERSION_ATTR),
    derived=(("NT", f"cdiv(T, {GDN_CHUNK})"), ("C", str(GDN_CHUNK))),
    requires=(_HEADS,),
    doc="Per chunk, all that does not depend on the state: the UT transform (W, U), Q K^T and the decays.",
)
GATED_DELTA_STATES = OpSpec(
    name="GatedDeltaStates", torch_name="gated_delta_states", version=1, stage_of="GatedDeltaRule",
    inputs=(_k, _w, _u, _gcs, _t("initial_state", "B,Hv,Dk,Dv", "float32")),
    outputs=(_hs, _vn, _t("final_state", "B,Hv,Dk,Dv", "float32")),
    attributes=(_L2NORM, PLUGIN_VERSION_ATTR),
    requires=(_HEADS, *_CHUNKS),
    doc="The sequential scan over chunks: S <- exp(gc_last) S + (K o exp(gc_last - gc))^T (U - W S).",
)
GATED_DELTA_OUT = OpSpec(
    name="GatedDeltaOut", torch_name="gated_delta_out", version=1, stage_of="GatedDeltaRule",
    inputs=(_q, _hs, _vn, _aqk, _gcs),
    outputs=(_t("output", "B,T,Hv,Dv"),),
    attributes=(_SCALE, _L2NORM, PLUGIN_VERSION_ATTR),
    requires=(_HEADS, *_CHUNKS),
    doc="Every chunk's output at once: O = (Q o exp(gc)) S_c + aqk (U - W S_c).",
)

OPS: dict[str, OpSpec] = {op.name: op for op in (GATED_DELTA_RULE, CAUSAL_CONV1D, MOE)}
ONNX_OPS: dict[str, OpSpec] = {k: v for k, v in OPS.items() if v.in_onnx_domain}
STAGE_OPS: dict[str, OpSpec] = {
    op.name: op for op in (MOE_PAIR_GATE_UP, MOE_PAIR_DOWN, MOE_ROUTE, MOE_ALIGN, MOE_GATE_UP, MOE_DOWN,
                           GATED_DELTA_PREP, GATED_DELTA_STATES, GATED_DELTA_OUT)
}
PLUGIN_OPS: dict[str, OpSpec] = {**ONNX_OPS, **STAGE_OPS}  # every node the builder meets: the IPluginV3 plugins
ALL_OPS: dict[str, OpSpec] = {**OPS, **STAGE_OPS}  # every op with a launcher and a QDP registration
