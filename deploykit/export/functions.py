"""Reference bodies of the `deploykit` ops as ONNX model-local functions (standard ops only).

Attached to every exported model under the same (domain, name) as the nodes, they make one artifact
serve three runtimes: ONNX Runtime inlines them, TensorRT >= 10.7 prefers a registered plugin of the
same name and otherwise imports the body, and `onnx.inliner.inline_local_functions` turns the model
into a standard-op-only one (`--decompose`). Math is fp32 inside, like the naive torch references.

GatedDeltaRule is the token-by-token recurrence as a `Scan` over T (dynamic B and T, T=1 included);
MoE is the dense form (every expert on every token, weighted by a scattered top-k matrix): exact, but
O(E) compute, meant for validation, not speed.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto
from onnx import helper as oh

from deploykit.export.schemas import onnx_attributes
from deploykit.ops.contract import DOMAIN, GATED_DELTA_RULE, MOE, OpSpec

L2NORM_EPS = 1e-6  # transformers' l2norm (modeling_qwen3_5.py) and deploykit/ops naive reference
FLOAT = TensorProto.FLOAT


class _Nodes:
    """Tiny builder: `n.op("Mul", a, b)` appends a node and returns its (unique) output name."""

    def __init__(self, prefix: str):
        self.prefix, self.nodes, self._count = prefix, [], 0

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs):
        self._count += 1
        names = [f"{self.prefix}{op_type.lower()}_{self._count}_{i}" for i in range(outputs)]
        self.nodes.append(oh.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    def const(self, value, dtype=FLOAT) -> str:
        vals = value if isinstance(value, list) else [value]
        dims = [len(vals)] if isinstance(value, list) else []
        return self.op("Constant", value=oh.make_tensor("v", dtype, dims, vals))

    def attr_const(self, attr: str, attr_type: int) -> str:
        """A scalar Constant whose value is the function's attribute `attr` (attribute reference)."""
        field = {onnx.AttributeProto.FLOAT: "value_float", onnx.AttributeProto.INT: "value_int"}[attr_type]
        ref = oh.make_attribute_ref(field, attr_type, ref_attr_name=attr)
        self._count += 1
        name = f"{self.prefix}attr_{attr}_{self._count}"
        node = oh.make_node("Constant", [], [name])
        node.attribute.append(ref)
        self.nodes.append(node)
        return name


def _function(spec: OpSpec, nodes: list, opset: int) -> onnx.FunctionProto:
    required = [a.name for a in onnx_attributes(spec) if a.default is None]
    defaults = [oh.make_attribute(a.name, a.default) for a in onnx_attributes(spec) if a.default is not None]
    fn = oh.make_function(
        DOMAIN,
        spec.name,
        [t.name for t in spec.inputs],
        [t.name for t in spec.outputs],
        nodes,
        opset_imports=[oh.make_opsetid("", opset)],
        attributes=required,
        attribute_protos=defaults,
        doc_string=f"deploykit reference body of {spec.qualified_name} v{spec.version}: {spec.doc}",
    )
    return fn


def _l2norm(n: _Nodes, x: str, flag: str) -> str:
    """x * (flag ? rsqrt(sum(x^2) + eps) : 1) along the last axis."""
    ss = n.op("ReduceSum", n.op("Mul", x, x), n.const([-1], TensorProto.INT64), keepdims=1)
    inv = n.op("Reciprocal", n.op("Sqrt", n.op("Add", ss, n.const(L2NORM_EPS))))
    factor = n.op("Add", n.op("Mul", inv, flag), n.op("Sub", n.const(1.0), flag))
    return n.op("Mul", x, factor)


def _expand_heads(n: _Nodes, x: str, v: str) -> str:
    """[B,T,Hk,D] -> [B,T,Hv,D]: each key head repeated for Hv/Hk consecutive value heads (GQA)."""
    bth = n.op("Shape", x, end=3)
    d = n.op("Shape", x, start=3)
    hk = n.op("Shape", x, start=2, end=3)
    hv = n.op("Shape", v, start=2, end=3)
    bt = n.op("Shape", x, end=2)
    r = n.op("Div", hv, hk)
    x5 = n.op(
        "Expand", n.op("Unsqueeze", x, n.const([3], TensorProto.INT64)), n.op("Concat", bth, r, d, axis=0)
    )
    return n.op("Reshape", x5, n.op("Concat", bt, hv, d, axis=0))


def _gdr_step_graph() -> onnx.GraphProto:
    """One token of the recurrence; state S [B,Hv,Dk,Dv], per-token slices shaped for MatMul."""
    n = _Nodes("step_")
    s1 = n.op("Mul", "S_in", "decay_t")  # S * exp(g_t)
    mem = n.op("MatMul", "k_row_t", s1)  # k^T S          [B,Hv,1,Dv]
    delta = n.op("Mul", n.op("Sub", "v_t", mem), "beta_t")
    n.nodes.append(oh.make_node("Add", [s1, n.op("MatMul", "k_col_t", delta)], ["S_out"]))  # rank-1 write
    n.nodes.append(oh.make_node("MatMul", ["q_row_t", "S_out"], ["o_t"]))  # read after the write
    ins = ["S_in", "q_row_t", "k_row_t", "k_col_t", "v_t", "decay_t", "beta_t"]
    return oh.make_graph(
        n.nodes,
        "gated_delta_rule_step",
        [oh.make_tensor_value_info(name, FLOAT, [None] * 4) for name in ins],  # all rank 4
        [oh.make_tensor_value_info(name, FLOAT, [None] * 4) for name in ("S_out", "o_t")],
    )


def gated_delta_rule_function(opset: int) -> onnx.FunctionProto:
    n = _Nodes("gdr_")
    q, k, v, beta = (n.op("Cast", name, to=FLOAT) for name in ("q", "k", "v", "beta"))
    flag = n.op("Cast", n.attr_const("use_qk_l2norm", onnx.AttributeProto.INT), to=FLOAT)
    q = n.op(
        "Mul", _l2norm(n, _expand_heads(n, q, v), flag), n.attr_const("scale", onnx.AttributeProto.FLOAT)
    )
    k = _l2norm(n, _expand_heads(n, k, v), flag)
    ax3, ax4, ax34 = (n.const(a, TensorProto.INT64) for a in ([3], [4], [3, 4]))
    decay = n.op("Exp", n.op("Cast", "g", to=FLOAT))
    scan_inputs = [
        n.op("Unsqueeze", q, ax3),
        n.op("Unsqueeze", k, ax3),
        n.op("Unsqueeze", k, ax4),  # [B,T,Hv,1,Dk], [..,Dk,1]
        n.op("Unsqueeze", v, ax3),
        n.op("Unsqueeze", decay, ax34),
        n.op("Unsqueeze", beta, ax34),
    ]
    state, o = n.op(
        "Scan",
        n.op("Cast", "initial_state", to=FLOAT),
        *scan_inputs,
        outputs=2,
        body=_gdr_step_graph(),
        num_scan_inputs=6,
        scan_input_axes=[1] * 6,
        scan_output_axes=[1],
    )
    n.nodes.append(oh.make_node("CastLike", [n.op("Squeeze", o, ax3), "v"], ["output"]))
    n.nodes.append(oh.make_node("Identity", [state], ["final_state"]))
    return _function(GATED_DELTA_RULE, n.nodes, opset)


def moe_function(opset: int) -> onnx.FunctionProto:
    n = _Nodes("moe_")
    x, logits, gate_up, down = (
        n.op("Cast", name, to=FLOAT) for name in ("hidden", "router_logits", "gate_up", "down")
    )
    p = n.op("Softmax", logits, axis=-1)
    k = n.op("Reshape", n.attr_const("top_k", onnx.AttributeProto.INT), n.const([1], TensorProto.INT64))
    w, idx = n.op("TopK", p, k, axis=-1, outputs=2)
    norm = n.op("Cast", n.attr_const("norm_topk_prob", onnx.AttributeProto.INT), to=FLOAT)
    total = n.op("ReduceSum", w, n.const([-1], TensorProto.INT64), keepdims=1)
    w = n.op("Div", w, n.op("Add", n.op("Mul", total, norm), n.op("Sub", n.const(1.0), norm)))
    dense = n.op("ScatterElements", n.op("Mul", p, n.const(0.0)), idx, w, axis=1)  # [N,E], top-k weights
    h = n.op(
        "MatMul",
        n.op("Unsqueeze", x, n.const([0], TensorProto.INT64)),
        n.op("Transpose", gate_up, perm=[0, 2, 1]),
    )  # [E,N,2I]
    gate, up = n.op("Split", h, axis=-1, num_outputs=2, outputs=2)
    act = n.op("Mul", n.op("Mul", gate, n.op("Sigmoid", gate)), up)  # SwiGLU [E,N,I]
    y = n.op("MatMul", act, n.op("Transpose", down, perm=[0, 2, 1]))  # [E,N,H]
    wt = n.op("Unsqueeze", n.op("Transpose", dense, perm=[1, 0]), n.const([2], TensorProto.INT64))  # [E,N,1]
    out = n.op("ReduceSum", n.op("Mul", y, wt), n.const([0], TensorProto.INT64), keepdims=0)
    n.nodes.append(oh.make_node("CastLike", [out, "hidden"], ["output"]))
    return _function(MOE, n.nodes, opset)


BODIES = {GATED_DELTA_RULE.name: gated_delta_rule_function, MOE.name: moe_function}


def attach_functions(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """Adds the body of every deploykit op the graph uses (in place) and returns the model."""
    used = {node.op_type for node in model.graph.node if node.domain == DOMAIN}
    present = {(f.domain, f.name) for f in model.functions}
    for name in sorted(used):
        if (DOMAIN, name) not in present:
            model.functions.append(BODIES[name](opset))
    if used and not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(oh.make_opsetid(DOMAIN, 1))
    return model
