"""MoE op: naive vs transformers' Qwen3_5MoeSparseMoeBlock routed part; grouped vs naive."""

import inspect

import pytest
import torch
from transformers import Qwen3_5MoeTextConfig
from transformers.models.qwen3_5_moe.modeling_qwen3_5_moe import Qwen3_5MoeSparseMoeBlock

from deploykit.ops.moe import grouped_moe, naive_moe


def test_same_signature():
    assert inspect.signature(naive_moe) == inspect.signature(grouped_moe)


@pytest.mark.parametrize("E,k", [(4, 1), (6, 2), (8, 3)])
def test_naive_matches_transformers_routed_experts(E, k):
    torch.manual_seed(E)
    cfg = Qwen3_5MoeTextConfig(hidden_size=16, num_experts=E, num_experts_per_tok=k, moe_intermediate_size=12,
                               shared_expert_intermediate_size=8)
    block = Qwen3_5MoeSparseMoeBlock(cfg).eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(9, 16)
    with torch.no_grad():
        logits, w, idx = block.gate(x)
        ref = block.experts(x, idx, w)
        out = naive_moe(x, logits, block.experts.gate_up_proj, block.experts.down_proj, top_k=k, norm_topk_prob=1)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm", [0, 1])
@pytest.mark.parametrize("N", [1, 5, 33])
def test_grouped_matches_naive(N, norm):
    torch.manual_seed(N)
    h, rl = torch.randn(N, 8), torch.randn(N, 7)
    gu, d = torch.randn(7, 10, 8), torch.randn(7, 8, 5)
    torch.testing.assert_close(grouped_moe(h, rl, gu, d, 3, norm), naive_moe(h, rl, gu, d, 3, norm),
                               rtol=1e-5, atol=1e-5)


def test_norm_topk_prob_off_keeps_softmax_weights():
    """With top_k = E and no renormalisation the weights are the full softmax: hand formula."""
    torch.manual_seed(0)
    h, rl = torch.randn(3, 4), torch.randn(3, 2)
    gu, d = torch.randn(2, 6, 4), torch.randn(2, 4, 3)
    p = rl.softmax(-1)
    expert = lambda e: (torch.nn.functional.silu(h @ gu[e, :3].t()) * (h @ gu[e, 3:].t())) @ d[e].t()
    ref = p[:, :1] * expert(0) + p[:, 1:] * expert(1)
    torch.testing.assert_close(naive_moe(h, rl, gu, d, top_k=2, norm_topk_prob=0), ref, rtol=1e-5, atol=1e-5)


def test_equal_router_probabilities_go_to_the_lower_expert_id_like_onnx_topk():
    """bf16 router logits tie often; the contract breaks ties by the lower expert id, which is what ONNX TopK
    specifies (and onnxruntime does), so the --decompose graph and the naive reference pick the same experts."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from deploykit.ops.moe import route

    logits = torch.tensor([[0.5, 2.0, 1.0, 2.0, 1.0, 2.0], [1.0, 1.0, 1.0, 1.0, 3.0, 0.0]])
    w, idx = route(logits, 3, 0)
    assert idx.tolist() == [[1, 3, 5], [4, 0, 1]]
    graph = helper.make_graph(
        [helper.make_node("TopK", ["p", "k"], ["w", "i"], axis=-1)],
        "topk",
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [2, 6])],
        [helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("i", TensorProto.INT64, [2, 3])],
        [helper.make_tensor("k", TensorProto.INT64, [1], [3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    p = torch.softmax(logits, -1).numpy()
    ort_w, ort_i = sess.run(None, {"p": p})
    assert ort_i.tolist() == idx.tolist()
    np.testing.assert_allclose(ort_w, w.numpy(), rtol=1e-6)
    onnx.checker.check_model(model)
