"""Small hand-written ONNX graphs with deploykit-domain nodes, for builder tests that do not need the exporter.

Each graph feeds graph inputs straight into one GatedDeltaRule and one MoE node. The optional model-local
function bodies are deliberately trivial stand-ins (Identity / Mul): these graphs test TensorRT's plugin vs
body dispatch, shapes and dtypes, not numerics (the real bodies come from deploykit.export).
"""

from __future__ import annotations

from onnx import TensorProto, helper

from deploykit.ops.contract import DOMAIN, GATED_DELTA_RULE, MOE

OPSET = 20
DTYPES = {"float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16, "float32": TensorProto.FLOAT}


def _vi(name: str, elem: int, dims):
    return helper.make_tensor_value_info(name, elem, list(dims))


def _bodies() -> list:
    gdr = helper.make_function(
        DOMAIN, GATED_DELTA_RULE.name, [t.name for t in GATED_DELTA_RULE.inputs], ["output", "final_state"],
        [helper.make_node("Identity", ["v"], ["output"]), helper.make_node("Identity", ["initial_state"], ["final_state"])],
        [helper.make_opsetid("", OPSET)], ["scale", "use_qk_l2norm", "plugin_version"])
    moe = helper.make_function(
        DOMAIN, MOE.name, [t.name for t in MOE.inputs], ["output"],
        [helper.make_node("Identity", ["hidden"], ["output"])],
        [helper.make_opsetid("", OPSET)], ["top_k", "norm_topk_prob", "plugin_version"])
    return [gdr, moe]


def contract_model(dtype: str = "float16", body: bool = True, namespace: str | None = DOMAIN,
                   version: str = "1", dims: dict | None = None, name: str = "GatedDeltaRule"):
    """GatedDeltaRule(q..initial_state) and MoE(hidden..down) on graph inputs. `dims` overrides symbol sizes:
    ints are static, strings stay symbolic (batch, tokens, tokens_flat)."""
    size = {"B": "batch", "T": "tokens", "Hk": 2, "Dk": 8, "Hv": 4, "Dv": 8,
            "N": "tokens_flat", "H": 16, "E": 4, "I2": 12, "I": 6}
    size.update(dims or {})
    act = DTYPES[dtype]
    inputs, nodes = [], []
    for spec, prefix, attrs in ((GATED_DELTA_RULE, "gdr_", {"scale": 0.35, "use_qk_l2norm": 1}),
                                (MOE, "moe_", {"top_k": 2, "norm_topk_prob": 1})):
        ins = [_vi(prefix + t.name, act if t.dtype == "T" else TensorProto.FLOAT, [size[d] for d in t.dims])
               for t in spec.inputs]
        inputs += ins
        extra = {"plugin_namespace": namespace} if namespace is not None else {}
        op = name if spec is GATED_DELTA_RULE else spec.name
        nodes.append(helper.make_node(op, [i.name for i in ins], [prefix + o.name for o in spec.outputs],
                                      name=f"{prefix}node", domain=DOMAIN, plugin_version=version, **attrs, **extra))
    outputs = [helper.make_tensor_value_info(prefix + o.name, act if o.dtype == "T" else TensorProto.FLOAT, None)
               for spec, prefix in ((GATED_DELTA_RULE, "gdr_"), (MOE, "moe_")) for o in spec.outputs]
    graph = helper.make_graph(nodes, "contract", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(DOMAIN, 1)],
                             functions=_bodies() if body else [])
