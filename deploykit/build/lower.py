"""Replaces each deploykit::MoE node by MoE's single-kernel stage ops, and each GatedDeltaRule node by its three
(contract STAGE_OPS), before TensorRT parses the model.

Why: an ahead-of-time TensorRT plugin (tensorrt.plugin `aot_impl`, compiled PTX, no Python at run time)
embeds exactly one kernel and gets no workspace. MoE is five kernels on its grouped path and two on its
pairs path, with grid-wide dependencies between them (routing counts before any GEMM; the whole SwiGLU row
before the down GEMM). As graph nodes, the stages' intermediates become ordinary tensors that TensorRT
allocates, and each plugin is one kernel. The exported ONNX keeps one MoE node: that is what ONNX Runtime
validates against PyTorch, and the stages' composition is tested against the same naive reference
(tests/builder/test_lower.py).

Which sequence (deploykit.plugins.moe.paths, the launcher's own rules) follows the token counts the
optimization profiles allow, since one engine has one graph for all profiles:
  pairs        no profile beyond PAIRS_MAX_TOKENS tokens: MoEPairGateUp -> MoEPairDown
  grouped      every profile beyond: MoERoute -> MoEAlign -> MoEGateUp -> MoEDown -> ReduceSum(axis 1) ->
               CastLike(hidden); block_m 16 when the largest call has <= 2 pairs per expert, else 64
  conditional  both (decode beside prefill): an ONNX If on N <= PAIRS_MAX_TOKENS, pairs, else grouped

GatedDeltaRule (`lower_gdn`): its own plugin is one kernel already (recurrent or chunked, TensorRT times the
tactics), but the single chunked kernel walks a prompt's chunks in 64 or 128 programs at batch 1; the three
stages (GatedDeltaPrep -> GatedDeltaStates -> GatedDeltaOut, fla's partition) run the state-free work of all
chunks in parallel. Stages pay off only from a whole chunk on (at T = 1 they would move the state twice more),
so by the profiles' token range (a graph holds one choice for every profile):
  kept         no profile reaches 64 tokens
  stages       every profile has 64 tokens or more
  conditional  an ONNX If on T >= 64: the stages, else the GatedDeltaRule node (decode keeps its own kernel)
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import helper as oh

from deploykit.errors import DeployKitError
from deploykit.ops.contract import DOMAIN, GATED_DELTA_RULE, GDN_CHUNK, MOE, STAGE_OPS
from deploykit.plugins.moe.paths import PAIRS_MAX_TOKENS, grouped_block_m

MIN_OPSET = 15  # CastLike (opset 15); ReduceSum takes its axes as an input from opset 13


@dataclass(frozen=True)
class MoELowering:
    path: str  # "pairs", "grouped", or "conditional" (If N <= PAIRS_MAX_TOKENS: pairs, else grouped)
    block_m: int = 0  # the grouped sequence's (grouped and conditional)

    def describe(self) -> str:
        grouped = f"grouped (block_m={self.block_m})"
        if self.path == "conditional":
            return f"conditional (pairs for N <= {PAIRS_MAX_TOKENS}, else {grouped})"
        return grouped if self.path == "grouped" else "pairs"


def choose_lowering(max_tokens: int, num_experts: int | None, top_k: int,
                    min_tokens: int | None = None) -> MoELowering:
    """The stage sequence for an engine whose profiles allow `min_tokens` to `max_tokens` tokens per MoE call
    (min_tokens None: one sequence for all, chosen by the largest)."""
    if max_tokens <= PAIRS_MAX_TOKENS:
        return MoELowering("pairs")
    # expert count unknown in the graph: the prefill tiles are right for any count
    bm = 64 if num_experts is None else grouped_block_m(max_tokens * top_k, num_experts)
    both = min_tokens is not None and min_tokens <= PAIRS_MAX_TOKENS
    return MoELowering("conditional" if both else "grouped", bm)


def _base(node: onnx.NodeProto) -> str:
    """The prefix of the names of what replaces `node`: its name, else its first output's."""
    return node.name or node.output[0]


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


def _moe_sequence(node: onnx.NodeProto, path: str, bm: int, out: str, base: str) -> list[onnx.NodeProto]:
    """One MoE node's stage sequence ("pairs" or "grouped" with block_m `bm`), writing `out`."""
    hidden, logits, gate_up, down = node.input
    top_k, norm = int(_attr(node, "top_k")), int(_attr(node, "norm_topk_prob", 1))
    t = lambda what: f"{base}/{what}"
    if path == "pairs":
        return [
            _stage_node("MoEPairGateUp", [hidden, logits, gate_up], [t("inter"), t("ids"), t("weights")],
                        t("pair_gate_up"), top_k=top_k, norm_topk_prob=norm),
            _stage_node("MoEPairDown", [t("inter"), down, t("ids"), t("weights")], [out], t("pair_down")),
        ]
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


def _if_on_dim(node: onnx.NodeProto, tensor: str, axis: int, op: str, bound: int, then_nodes, else_nodes,
               outputs: list[tuple[str, int, int]]) -> list[onnx.NodeProto]:
    """If(op(tensor.shape[axis], bound)) { then_nodes } else { else_nodes }, the condition read from the shape at
    run time. `outputs`: (suffix, elem type, rank) of each of node's outputs; the branches write
    `{base}/then/{suffix}` and `{base}/else/{suffix}`."""
    base = _base(node)
    t = lambda what: f"{base}/{what}"

    def branch(side: str, nodes) -> onnx.GraphProto:
        infos = [oh.make_tensor_value_info(t(f"{side}/{sfx}"), elem, [None] * rank) for sfx, elem, rank in outputs]
        return oh.make_graph(nodes, f"{base}_{side}".replace("/", "_"), [], infos)

    scalar = lambda name, value: oh.make_node("Constant", [], [t(name)], name=t(name),  # noqa: E731
                                              value=oh.make_tensor(t(name) + "_value", onnx.TensorProto.INT64, [],
                                                                   [value]))
    return [
        oh.make_node("Shape", [tensor], [t("shape")], name=t("shape")),
        scalar("axis", axis),
        oh.make_node("Gather", [t("shape"), t("axis")], [t("size")], name=t("size"), axis=0),
        scalar("bound", bound),
        oh.make_node(op, [t("size"), t("bound")], [t("cond")], name=t("cond")),
        oh.make_node("If", [t("cond")], list(node.output), name=t("if"), then_branch=branch("then", then_nodes),
                     else_branch=branch("else", else_nodes)),
    ]


def _moe_stages(node: onnx.NodeProto, lowering: MoELowering, elem: int = 0) -> list[onnx.NodeProto]:
    base, (out,) = _base(node), node.output
    if lowering.path != "conditional":
        return _moe_sequence(node, lowering.path, lowering.block_m, out, base)
    pairs = _moe_sequence(node, "pairs", 0, f"{base}/then/output", f"{base}/then")
    grouped = _moe_sequence(node, "grouped", lowering.block_m, f"{base}/else/output", f"{base}/else")
    return _if_on_dim(node, node.input[0], 0, "LessOrEqual", PAIRS_MAX_TOKENS, pairs, grouped, [("output", elem, 2)])


def lower_moe(model: onnx.ModelProto, max_tokens: int,
              min_tokens: int | None = None) -> tuple[onnx.ModelProto, MoELowering | None]:
    """A copy of `model` with every MoE node replaced by its stages (weights untouched: external data stays
    where it is); returns it and the lowering used (None: no MoE node, the model is returned as is). With
    `min_tokens` at most PAIRS_MAX_TOKENS (a decode profile beside a prefill one) an If picks the sequence."""
    moe_nodes = [n for n in model.graph.node if n.domain == DOMAIN and n.op_type == MOE.name]
    if not moe_nodes:
        return model, None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise DeployKitError(f"the model's ONNX opset {opset} is older than {MIN_OPSET}, which the MoE stages need",
                             "re-export with the current deploykit, or build without --moe-stages")
    first = moe_nodes[0]
    lowering = choose_lowering(max_tokens, _leading_dim(model, first.input[2]), int(_attr(first, "top_k")),
                               min_tokens)
    conditional = lowering.path == "conditional"
    infos = _value_infos(model) if conditional else {}  # the If's branch outputs need hidden's dtype

    def replace(node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        if node.domain != DOMAIN or node.op_type != MOE.name:
            return None
        return _moe_stages(node, lowering, _input_elem(node, infos, "--moe-stages") if conditional else 0)

    return _replace_nodes(model, replace), lowering


def _replace_nodes(model: onnx.ModelProto, replace) -> onnx.ModelProto:
    """A copy of `model` (weights untouched: external data stays where it is) with each node that
    `replace(node)` maps to a list of nodes replaced by them (None: the node is kept)."""
    lowered = onnx.ModelProto()
    lowered.CopyFrom(model)
    del lowered.graph.node[:]
    for node in model.graph.node:
        new = replace(node)
        lowered.graph.node.extend([node] if new is None else new)
    return lowered


@dataclass(frozen=True)
class GdnLowering:
    mode: str  # "stages" or "conditional" (If T >= GDN_CHUNK)

    def describe(self) -> str:
        return "stages" if self.mode == "stages" else f"conditional (stages for T >= {GDN_CHUNK}, else the node)"


def choose_gdn_lowering(min_tokens: int, max_tokens: int) -> GdnLowering | None:
    """None (keep the node) when no profile reaches a chunk; stages when every profile does; else an If."""
    if max_tokens < GDN_CHUNK:
        return None
    return GdnLowering("stages" if min_tokens >= GDN_CHUNK else "conditional")


def _gdn_stages(node: onnx.NodeProto, outputs: list[str], base: str) -> list[onnx.NodeProto]:
    q, k, v, g, beta, h0 = node.input
    scale, l2 = float(_attr(node, "scale")), int(_attr(node, "use_qk_l2norm", 1))
    t = lambda what: f"{base}/{what}"
    return [
        _stage_node("GatedDeltaPrep", [q, k, v, g, beta], [t("w"), t("u"), t("aqk"), t("gcs")], t("prep"),
                    scale=scale, use_qk_l2norm=l2),
        _stage_node("GatedDeltaStates", [k, t("w"), t("u"), t("gcs"), h0], [t("hs"), t("vn"), outputs[1]],
                    t("states"), use_qk_l2norm=l2),
        _stage_node("GatedDeltaOut", [q, t("hs"), t("vn"), t("aqk"), t("gcs")], [outputs[0]], t("out"),
                    scale=scale, use_qk_l2norm=l2),
    ]


def _gdn_conditional(node: onnx.NodeProto, act_elem: int) -> list[onnx.NodeProto]:
    """If(T >= GDN_CHUNK) { the stages } else { the node }, T read from q's shape at run time."""
    base = _base(node)
    t = lambda what: f"{base}/{what}"
    stages = _gdn_stages(node, [t("then/output"), t("then/final_state")], t("then"))
    kept = onnx.NodeProto()
    kept.CopyFrom(node)
    kept.name = t("else/node")
    del kept.output[:]
    kept.output.extend([t("else/output"), t("else/final_state")])
    # [B, T, Hv, Dv] and [B, Hv, Dk, Dv]: rank known, sizes left to inference
    outputs = [("output", act_elem, 4), ("final_state", onnx.TensorProto.FLOAT, 4)]
    return _if_on_dim(node, node.input[0], 1, "GreaterOrEqual", GDN_CHUNK, stages, [kept], outputs)


def _value_infos(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """Every typed tensor of the graph: its inputs, outputs and value_info, and what shape inference adds (with
    the deploykit schemas registered, so the contract's rule types the custom nodes' outputs)."""
    from deploykit.export.schemas import register_schemas

    register_schemas()
    infos = {}
    for graph in (model.graph, onnx.shape_inference.infer_shapes(model).graph):
        for vi in (*graph.input, *graph.value_info, *graph.output):
            if vi.type.tensor_type.elem_type:
                infos.setdefault(vi.name, vi)
    return infos


def _input_elem(node: onnx.NodeProto, infos: dict, flag: str) -> int:
    """The ONNX element type of the node's first input (its activation dtype), from `_value_infos`."""
    if node.input[0] not in infos:
        raise DeployKitError(f"the dtype of {node.input[0]} (a {node.op_type} input) is not known from the model",
                             f"re-export with the current deploykit, or build without {flag}")
    return infos[node.input[0]].type.tensor_type.elem_type


def _check_head_dims(node: onnx.NodeProto, infos: dict) -> int:
    """The activation dtype of a GatedDeltaRule node; refuses head dims the stage kernels do not take."""
    elem = _input_elem(node, infos, "--gdn-stages")
    q, v = infos[node.input[0]], infos.get(node.input[2])
    for what, vi in (("Dk", q), ("Dv", v)):
        dims = vi.type.tensor_type.shape.dim if vi is not None else []
        size = dims[3].dim_value if len(dims) == 4 and dims[3].HasField("dim_value") else 0
        if size and size & (size - 1):
            raise DeployKitError(f"GatedDeltaRule node {_base(node)} has {what} = {size}; its stage "
                                 "kernels need power-of-two head dims", "build without --gdn-stages")
    return elem


def lower_gdn(model: onnx.ModelProto, min_tokens: int, max_tokens: int) -> tuple[onnx.ModelProto, GdnLowering | None]:
    """A copy of `model` with every GatedDeltaRule node replaced by its stages, directly or under an If (see the
    module docstring); returns it and the lowering used (None: no GatedDeltaRule node, or no profile reaches a
    chunk: the model is returned as is)."""
    nodes = [n for n in model.graph.node if n.domain == DOMAIN and n.op_type == GATED_DELTA_RULE.name]
    lowering = choose_gdn_lowering(min_tokens, max_tokens) if nodes else None
    if lowering is None:
        return model, None
    infos = _value_infos(model)
    elems = {id(n): _check_head_dims(n, infos) for n in nodes}  # all checked before anything is built

    def replace(node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        if id(node) not in elems:
            return None
        if lowering.mode == "stages":
            return _gdn_stages(node, list(node.output), _base(node))
        return _gdn_conditional(node, elems[id(node)])

    return _replace_nodes(model, replace), lowering
