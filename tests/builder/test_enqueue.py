"""The plugins' enqueue body on the CPU: `run_launcher` is what `enqueue` runs once TensorRT's device buffers are
torch tensors. Here the buffers are CPU tensors and the Triton launchers run in the interpreter; the results are
compared with the ops' naive references (deploykit/ops). The pointer wrapping and stream of `enqueue` itself
need a GPU and are not exercised (docs/build.md, support matrix)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")


def _parsed_plugins(backend, save) -> dict:
    """{plugin name: plugin object} as TensorRT created them from contract_model()'s nodes."""
    from contract_graphs import contract_model

    from deploykit.build.builder import parse_onnx

    parsed = parse_onnx(save(contract_model()), backend, plugins=True)
    out = {}
    for i in range(parsed.network.num_layers):
        layer = parsed.network.get_layer(i)
        layer.__class__ = backend.trt.IPluginV3Layer
        plugin = layer.plugin.get_capability_interface(backend.trt.PluginCapabilityType.CORE)
        out[plugin.plugin_name] = plugin
    return out


def test_gated_delta_rule_enqueue_matches_naive(backend, save):
    from deploykit.plugins.tensorrt_v3 import run_launcher

    from deploykit.ops.contract import GATED_DELTA_RULE
    from deploykit.ops.gated_delta_rule import naive_gated_delta_rule

    plugin = _parsed_plugins(backend, save)["GatedDeltaRule"]  # attributes decoded from TensorRT's fields
    gen = torch.Generator().manual_seed(0)
    B, T, Hk, Hv, Dk, Dv = 1, 3, 2, 4, 8, 8  # contract_model's head sizes
    q, k = (torch.randn(B, T, Hk, Dk, generator=gen) for _ in range(2))
    v = torch.randn(B, T, Hv, Dv, generator=gen)
    g = -torch.rand(B, T, Hv, generator=gen)
    beta = torch.rand(B, T, Hv, generator=gen)
    h0 = torch.randn(B, Hv, Dk, Dv, generator=gen)
    assert plugin.attrs == {"scale": pytest.approx(0.35), "use_qk_l2norm": 1}  # the node's attribute values
    outs = [torch.full_like(v, float("nan")), torch.full_like(h0, float("nan"))]  # TensorRT's output buffers
    run_launcher(GATED_DELTA_RULE, plugin.attrs, [q, k, v, g, beta, h0], outs)
    ref_o, ref_s = naive_gated_delta_rule(q, k, v, g, beta, h0, scale=0.35, use_qk_l2norm=1)
    torch.testing.assert_close(outs[0], ref_o, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs[1], ref_s, atol=1e-5, rtol=1e-5)


def test_moe_enqueue_matches_naive(backend, save):
    from deploykit.plugins.tensorrt_v3 import run_launcher

    from deploykit.ops.contract import MOE
    from deploykit.ops.moe import naive_moe

    plugin = _parsed_plugins(backend, save)["MoE"]
    assert plugin.attrs == {"top_k": 2, "norm_topk_prob": 1}
    gen = torch.Generator().manual_seed(1)
    N, H, E, I = 3, 16, 4, 6  # contract_model's sizes
    hidden, logits = torch.randn(N, H, generator=gen), torch.randn(N, E, generator=gen)
    gate_up, down = torch.randn(E, 2 * I, H, generator=gen) / 4, torch.randn(E, H, I, generator=gen) / 4
    out = torch.full_like(hidden, float("nan"))
    run_launcher(MOE, plugin.attrs, [hidden, logits, gate_up, down], [out])
    torch.testing.assert_close(out, naive_moe(hidden, logits, gate_up, down, 2, 1), atol=1e-4, rtol=1e-4)
