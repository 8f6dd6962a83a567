"""deploykit's op contract: the custom ops that the reference model, the ONNX exporter and the
TensorRT plugins all implement. This module is the single source of truth for their names, versions,
inputs, outputs, attributes, dtypes and shape rules.

Every output dimension is named by a symbol that also names an input dimension, so one rule answers
"what is the output shape?" for the torch fake implementation, ONNX shape inference and the TensorRT
plugin's `get_output_shapes` alike (see `output_dims`).

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
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

DOMAIN = "deploykit"
OP_SET_VERSION = 1

ACTIVATION_DTYPES = ("float32", "float16", "bfloat16")

DType = Literal["T", "float32"]
"""'T' = the op's activation dtype (one of ACTIVATION_DTYPES); 'float32' = always fp32."""


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
    doc: str = ""

    @model_validator(mode="after")
    def _every_output_dim_is_bound(self) -> OpSpec:
        bound = {d for t in self.inputs for d in t.dims}
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

    def dim_source(self, symbol: str) -> tuple[int, int]:
        """(input index, axis) of the first input that carries `symbol`."""
        for i, t in enumerate(self.inputs):
            if symbol in t.dims:
                return i, t.dims.index(symbol)
        raise KeyError(symbol)

    def output_dims(self) -> list[list[tuple[int, int]]]:
        """For each output, for each axis: the (input index, axis) it copies. THE shape rule."""
        return [[self.dim_source(d) for d in out.dims] for out in self.outputs]

    def output_dtypes(self, activation_dtype: str) -> list[str]:
        return [activation_dtype if o.dtype == "T" else o.dtype for o in self.outputs]

    def infer_shapes(self, input_shapes: list[tuple]) -> list[tuple]:
        """Output shapes from input shapes (ints or symbolic objects): the rule applied."""
        return [tuple(input_shapes[i][a] for i, a in out) for out in self.output_dims()]

    def check_shapes(self, input_shapes: list[tuple[int, ...]]) -> dict[str, int]:
        """Binds every symbol from concrete input shapes; raises ValueError naming the first conflict."""
        if len(input_shapes) != len(self.inputs):
            raise ValueError(f"{self.name}: expected {len(self.inputs)} inputs, got {len(input_shapes)}")
        bound: dict[str, int] = {}
        for spec, shape in zip(self.inputs, input_shapes):
            if len(shape) != len(spec.dims):
                raise ValueError(f"{self.name}: input '{spec.name}' must have rank {len(spec.dims)} "
                                 f"{list(spec.dims)}, got shape {list(shape)}")
            for sym, size in zip(spec.dims, shape):
                if sym in bound and bound[sym] != size:
                    raise ValueError(f"{self.name}: input '{spec.name}' has {sym}={size}, "
                                     f"but an earlier input has {sym}={bound[sym]}")
                bound[sym] = int(size)
        return bound


def _t(name: str, dims: str, dtype: DType = "T", doc: str = "") -> TensorSpec:
    return TensorSpec(name=name, dims=tuple(dims.split(",")), dtype=dtype, doc=doc)


PLUGIN_VERSION_ATTR = AttributeSpec(
    name="plugin_version", type="string", default="1",
    doc="TensorRT plugin version the node maps to (the ONNX parser reads this attribute).",
)

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
    doc="Depthwise causal conv1d with carried state (Gated DeltaNet's short conv).",
)

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
    doc="Routed experts: softmax router, top-k, SwiGLU experts, weighted sum (shared expert excluded).",
)

OPS: dict[str, OpSpec] = {op.name: op for op in (GATED_DELTA_RULE, CAUSAL_CONV1D, MOE)}
ONNX_OPS: dict[str, OpSpec] = {k: v for k, v in OPS.items() if v.in_onnx_domain}
