"""Replaces each deploykit::MoE node by MoE's single-kernel stage ops (contract STAGE_OPS) before TensorRT
parses the model.

Why: an ahead-of-time TensorRT plugin (tensorrt.plugin `aot_impl`, compiled PTX, no Python at run time)
embeds exactly one kernel and gets no workspace. MoE is five kernels on its grouped path and two on its
pairs path, with grid-wide dependencies between them (routing counts before any GEMM; the whole SwiGLU row
before the down GEMM). As graph nodes, the stages' intermediates become ordinary tensors that TensorRT
allocates, and each plugin is one kernel. The exported ONNX keeps one MoE node: that is what ONNX Runtime
validates against PyTorch, and the stages' composition is tested against the same naive reference
(tests/builder/test_lower.py).

Which sequence (deploykit.plugins.moe.paths, the launcher's own rules) is decided by the largest token
count any optimization profile allows, since one engine has one graph for all profiles:
  pairs    up to PAIRS_MAX_TOKENS tokens: MoEPairGateUp -> MoEPairDown
  grouped  beyond: MoERoute -> MoEAlign -> MoEGateUp -> MoEDown -> ReduceSum(axis 1) -> CastLike(hidden);
           block_m 16 when every profile is decode-sized (<= 2 pairs per expert), else 64.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import helper as oh

from deploykit.errors import DeployKitError
from deploykit.ops.contract import DOMAIN, MOE, STAGE_OPS
from deploykit.plugins.moe.paths import PAIRS_MAX_TOKENS, grouped_block_m

MIN_OPSET = 15  # CastLike (opset 15); ReduceSum takes its axes as an input from opset 13


@dataclass(frozen=True)
class MoELowering:
    path: str  # "pairs" or "grouped"
    block_m: int = 0  # grouped only

    def describe(self) -> str:
        return self.path if self.path == "pairs" else f"grouped (block_m={self.block_m})"


def choose_lowering(max_tokens: int, num_experts: int | None, top_k: int) -> MoELowering:
    """The stage sequence for an engine whose profiles allow up to `max_tokens` tokens per MoE call."""
    if max_tokens <= PAIRS_MAX_TOKENS:
        return MoELowering("pairs")
    if num_experts is None:  # expert count unknown in the graph: the prefill tiles are right for any count
        return MoELowering("grouped", 64)
    return MoELowering("grouped", grouped_block_m(max_tokens * top_k, num_experts))


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return oh.get_attribute_value(a)
    return default


def _leading_dim(model: onnx.ModelProto, name: str) -> int | None:
    """Axis 0 of a tensor, from the initializers, graph inputs or value_info (None if unknown or symbolic)."""
    for t in model.graph.initializer:
        if t.name == name:
            return int(t.dims[0])
    for vi in (*model.graph.input, *model.graph.value_info):
        if vi.name == name and vi.type.tensor_type.shape.dim:
            d = vi.type.tensor_type.shape.dim[0]
            return d.dim_value if d.HasField("dim_value") else None
    return None


def _stage_node(op: str, inputs: list[str], outputs: list[str], name: str, **attrs) -> onnx.NodeProto:
    spec = STAGE_OPS[op]
    return oh.make_node(op, inputs, outputs, name=name, domain=DOMAIN, plugin_version=spec.plugin_version,
                        plugin_namespace=DOMAIN, **attrs)


def _moe_stages(node: onnx.NodeProto, lowering: MoELowering) -> list[onnx.NodeProto]:
    hidden, logits, gate_up, down = node.input
    (out,) = node.output
    top_k, norm = int(_attr(node, "top_k")), int(_attr(node, "norm_topk_prob", 1))
    base = node.name or out
    t = lambda what: f"{base}/{what}"
    if lowering.path == "pairs":
        return [
            _stage_node("MoEPairGateUp", [hidden, logits, gate_up], [t("inter"), t("ids"), t("weights")],
                        t("pair_gate_up"), top_k=top_k, norm_topk_prob=norm),
            _stage_node("MoEPairDown", [t("inter"), down, t("ids"), t("weights")], [out], t("pair_down")),
        ]
    bm = lowering.block_m
    axes = oh.make_tensor(t("axes_value"), onnx.TensorProto.INT64, [1], [1])
    return [
        _stage_node("MoERoute", [logits], [t("ids"), t("weights")], t("route"), top_k=top_k, norm_topk_prob=norm),
        _stage_node("MoEAlign", [logits, t("ids")], [t("slots"), t("blocks")], t("align"), block_m=bm),
        _stage_node("MoEGateUp", [hidden, gate_up, t("slots"), t("blocks")], [t("inter")], t("gate_up"),
                    top_k=top_k, block_m=bm),
        _stage_node("MoEDown", [t("inter"), down, t("slots"), t("blocks"), t("weights")], [t("pair_out")],
                    t("down"), block_m=bm),
        oh.make_node("Constant", [], [t("axes")], name=t("axes"), value=axes),
        oh.make_node("ReduceSum", [t("pair_out"), t("axes")], [t("sum")], name=t("sum"), keepdims=0),
        oh.make_node("CastLike", [t("sum"), hidden], [out], name=t("cast")),  # fp32 sum -> hidden's dtype
    ]


def lower_moe(model: onnx.ModelProto, max_tokens: int) -> tuple[onnx.ModelProto, MoELowering | None]:
    """A copy of `model` with every MoE node replaced by its stages (weights untouched: external data stays
    where it is); returns it and the lowering used (None: no MoE node, the model is returned as is)."""
    moe_nodes = [n for n in model.graph.node if n.domain == DOMAIN and n.op_type == MOE.name]
    if not moe_nodes:
        return model, None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise DeployKitError(f"the model's ONNX opset {opset} is older than {MIN_OPSET}, which the MoE stages need",
                             "re-export with the current deploykit, or build without --moe-stages")
    first = moe_nodes[0]
    lowering = choose_lowering(max_tokens, _leading_dim(model, first.input[2]), int(_attr(first, "top_k")))
    lowered = onnx.ModelProto()
    lowered.CopyFrom(model)
    del lowered.graph.node[:]
    for node in model.graph.node:
        if node.domain == DOMAIN and node.op_type == MOE.name:
            lowered.graph.node.extend(_moe_stages(node, lowering))
        else:
            lowered.graph.node.append(node)
    return lowered, lowering
