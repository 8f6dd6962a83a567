"""The deploykit ONNX schemas and function bodies on ONNX Runtime vs the naive torch references."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto as TP
from onnx import helper as oh

from deploykit.export.functions import gated_delta_rule_function, moe_function
from deploykit.export.schemas import register_schemas
from deploykit.ops.contract import DOMAIN, GATED_DELTA_RULE, MOE
from deploykit.ops.gated_delta_rule import naive_gated_delta_rule
from deploykit.ops.moe import naive_moe

ort = pytest.importorskip("onnxruntime")
OPSET = 20
ATOL = 2e-6  # fp32: the Scan body and the naive loop do the same ops in the same order up to matmul blocking


def _single_node_model(spec, fn, attrs, shapes):
    register_schemas()
    node = oh.make_node(
        spec.name, [t.name for t in spec.inputs], [t.name for t in spec.outputs], domain=DOMAIN, **attrs
    )
    dtype = {"T": TP.FLOAT, "float32": TP.FLOAT}
    graph = oh.make_graph(
        [node],
        spec.name,
        [oh.make_tensor_value_info(t.name, dtype[t.dtype], s) for t, s in zip(spec.inputs, shapes, strict=True)],
        [oh.make_tensor_value_info(t.name, dtype[t.dtype], [None] * len(t.dims)) for t in spec.outputs],
    )
    model = oh.make_model(
        graph, opset_imports=[oh.make_opsetid("", OPSET), oh.make_opsetid(DOMAIN, 1)], functions=[fn(OPSET)]
    )
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("hk,hv,l2", [(2, 6, 1), (3, 3, 1), (1, 2, 0)])
def test_gated_delta_rule_body_matches_naive(hk, hv, l2):
    dk, dv, scale = 8, 5, 0.31
    model = _single_node_model(
        GATED_DELTA_RULE,
        gated_delta_rule_function,
        {"scale": scale, "use_qk_l2norm": l2, "plugin_version": "1", "plugin_namespace": DOMAIN},
        [
            ["B", "T", hk, dk],
            ["B", "T", hk, dk],
            ["B", "T", hv, dv],
            ["B", "T", hv],
            ["B", "T", hv],
            ["B", hv, dk, dv],
        ],
    )
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    for b, t in [(2, 7), (1, 1), (3, 2)]:  # T=1 decode included
        k_scale = 1.0 if l2 else 0.2  # without l2norm keep the write stable
        args = (
            torch.randn(b, t, hk, dk, generator=gen),
            k_scale * torch.randn(b, t, hk, dk, generator=gen),
            torch.randn(b, t, hv, dv, generator=gen),
            -torch.rand(b, t, hv, generator=gen),
            torch.rand(b, t, hv, generator=gen),
            torch.randn(b, hv, dk, dv, generator=gen),
        )
        out, state = sess.run(None, {s.name: a.numpy() for s, a in zip(GATED_DELTA_RULE.inputs, args, strict=True)})
        ref_out, ref_state = naive_gated_delta_rule(*args, scale=scale, use_qk_l2norm=l2)
        np.testing.assert_allclose(out, ref_out.numpy(), atol=ATOL, rtol=0)
        np.testing.assert_allclose(state, ref_state.numpy(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("top_k,norm", [(2, 1), (3, 0), (1, 1)])
def test_moe_body_matches_naive(top_k, norm):
    e, h, i = 5, 8, 6
    model = _single_node_model(
        MOE,
        moe_function,
        {"top_k": top_k, "norm_topk_prob": norm, "plugin_version": "1", "plugin_namespace": DOMAIN},
        [["N", h], ["N", e], [e, 2 * i, h], [e, h, i]],
    )
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(1)
    for n in (1, 9):
        args = (
            torch.randn(n, h, generator=gen),
            torch.randn(n, e, generator=gen),
            torch.randn(e, 2 * i, h, generator=gen),
            torch.randn(e, h, i, generator=gen),
        )
        (out,) = sess.run(None, {s.name: a.numpy() for s, a in zip(MOE.inputs, args, strict=True)})
        np.testing.assert_allclose(
            out, naive_moe(*args, top_k=top_k, norm_topk_prob=norm).numpy(), atol=1e-5, rtol=1e-5
        )  # dense sum over E vs k-term loop: fp32 order


def test_schema_shape_inference_follows_contract():
    """Shape inference through the registered schema gives every output the contract's dims and dtype."""
    model = _single_node_model(
        GATED_DELTA_RULE,
        gated_delta_rule_function,
        {"scale": 0.5},
        [["B", "T", 2, 4], ["B", "T", 2, 4], ["B", "T", 4, 3], ["B", "T", 4], ["B", "T", 4], ["B", 4, 4, 3]],
    )
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    vi = {v.name: v for v in inferred.graph.output}
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    assert dims(vi["output"]) == ["B", "T", 4, 3]
    assert dims(vi["final_state"]) == ["B", 4, 4, 3]
    assert vi["final_state"].type.tensor_type.elem_type == TP.FLOAT


def test_schema_rejects_missing_required_attribute():
    register_schemas()
    node = oh.make_node("MoE", ["x", "l", "g", "d"], ["y"], domain=DOMAIN)  # top_k is required
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_node(node, _ctx())


def _ctx():
    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version = onnx.IR_VERSION
    ctx.opset_imports = {"": OPSET, DOMAIN: 1}
    return ctx


def test_schema_shape_inference_rejects_a_wrong_rank():
    """A rank-3 initial_state: the other inputs still bind every symbol, so only the contract's rank check sees
    it (a zip over its dims alone would pass it and infer the outputs as if it were right)."""
    with pytest.raises(ValueError, match="GatedDeltaRule: input 'initial_state' must have rank 4"):
        _single_node_model(
            GATED_DELTA_RULE,
            gated_delta_rule_function,
            {"scale": 0.5},
            [["B", "T", 2, 4], ["B", "T", 2, 4], ["B", "T", 4, 3], ["B", "T", 4], ["B", "T", 4], ["B", 4, 4]],
        )


def test_schema_shape_inference_refuses_fixed_dims_the_kernels_refuse():
    """The exporter's check_model runs the schemas' inference, which runs the launchers' checks on the dims the
    graph fixes (OpSpec.check_static): three value heads over two key heads are refused by name; the same graph
    with the head counts left as names is not, as nothing about them is known yet."""
    def shapes(hk, hv):
        qk, gb = ["B", "T", hk, 4], ["B", "T", hv]
        return [qk, qk, ["B", "T", hv, 3], gb, gb, ["B", hv, 4, 3]]

    with pytest.raises(ValueError, match=r"GatedDeltaRule: needs Hv % Hk == 0, got Hv=3, Hk=2"):
        _single_node_model(GATED_DELTA_RULE, gated_delta_rule_function, {"scale": 0.5}, shapes(2, 3))
    model = _single_node_model(GATED_DELTA_RULE, gated_delta_rule_function, {"scale": 0.5}, shapes("Hk", "Hv"))
    final = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph.output[1]
    assert [d.dim_param or d.dim_value for d in final.type.tensor_type.shape.dim] == ["B", "Hv", 4, 3]
