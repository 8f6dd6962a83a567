"""The plugins' enqueue body on the CPU: `run_launcher` is what `enqueue` runs once TensorRT's device buffers are
torch tensors. Here the buffers are CPU tensors and the Triton launchers run in the interpreter; the results are
compared with the ops' naive references (deploykit/ops). The pointer wrapping and stream of `enqueue` itself
need a GPU and are not exercised (docs/build.md, support matrix)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")


def _plugins_of(backend, parsed) -> dict:
    """{plugin name: its IPluginV3 core} of every plugin layer TensorRT's parser made."""
    plugins = {}
    for i in range(parsed.network.num_layers):
        layer = parsed.network.get_layer(i)
        if layer.type.name == "PLUGIN_V3":
            layer.__class__ = backend.trt.IPluginV3Layer
            core = layer.plugin.get_capability_interface(backend.trt.PluginCapabilityType.CORE)
            plugins[core.plugin_name] = core
    return plugins


def _parsed_plugins(backend, save) -> dict:
    """{plugin name: plugin object} as TensorRT created them from contract_model()'s nodes."""
    from contract_graphs import contract_model

    from deploykit.build.builder import parse_onnx

    return _plugins_of(backend, parse_onnx(save(contract_model()), backend, plugins=True))


@pytest.mark.parametrize("tactic", [0, 1, 2, 3, 4, 5, 6])
def test_gated_delta_rule_enqueue_matches_naive(backend, save, tactic):
    """Every tactic the plugin offers TensorRT to time (0: none chosen; 0 and 1: the launcher's own choice)."""
    from deploykit.plugins.tensorrt_v3 import TACTICS, run_launcher

    from deploykit.ops.contract import GATED_DELTA_RULE
    from deploykit.ops.gated_delta_rule import naive_gated_delta_rule

    plugin = _parsed_plugins(backend, save)["GatedDeltaRule"]  # attributes decoded from TensorRT's fields
    assert plugin.get_valid_tactics() == sorted(TACTICS["GatedDeltaRule"])
    plugin.set_tactic(tactic)
    assert plugin.clone().tactic == tactic  # TensorRT clones the plugin it configured
    gen = torch.Generator().manual_seed(0)
    B, T, Hk, Hv, Dk, Dv = 1, 19, 2, 4, 8, 8  # contract_model's head sizes; T: one 16-token chunk and 3
    q, k = (torch.randn(B, T, Hk, Dk, generator=gen) for _ in range(2))
    v = torch.randn(B, T, Hv, Dv, generator=gen)
    g = -torch.rand(B, T, Hv, generator=gen)
    beta = torch.rand(B, T, Hv, generator=gen)
    h0 = torch.randn(B, Hv, Dk, Dv, generator=gen)
    assert plugin.attrs == {"scale": pytest.approx(0.35), "use_qk_l2norm": 1}  # the node's attribute values
    outs = [torch.full_like(v, float("nan")), torch.full_like(h0, float("nan"))]  # TensorRT's output buffers
    run_launcher(GATED_DELTA_RULE, plugin.attrs, [q, k, v, g, beta, h0], outs, plugin.tactic)
    ref_o, ref_s = naive_gated_delta_rule(q, k, v, g, beta, h0, scale=0.35, use_qk_l2norm=1)
    torch.testing.assert_close(outs[0], ref_o, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs[1], ref_s, atol=1e-5, rtol=1e-5)


AUTO_100 = ["gdn_chunk_prep_kernel", "gdn_chunk_scan_kernel"]  # the launcher's "auto" at 100 tokens: "split"


@pytest.mark.parametrize("tactic,kernels,chunk", [
    (0, AUTO_100, None), (1, AUTO_100, None), (2, ["gdn_recurrent_kernel"], None), (3, ["gdn_chunk_kernel"], 64),
    (4, ["gdn_chunk_kernel"], 16), (5, AUTO_100, None),
    (6, ["gdn_chunk_prep_kernel", "gdn_chunk_states_kernel", "gdn_chunk_out_kernel"], None),
])
def test_the_tactic_chosen_is_the_kernel_launched(tactic, kernels, chunk):
    """The tactic TensorRT sets reaches the launcher: the kernels launched (recorded, not run), the chunk size."""
    from deploykit.plugins.aot import recorded_launches
    from deploykit.plugins.tensorrt_v3 import run_launcher

    from deploykit.ops.contract import GATED_DELTA_RULE

    B, T, Hk, Hv, Dk, Dv = 1, 100, 2, 4, 8, 8
    ins = [torch.zeros(B, T, Hk, Dk), torch.zeros(B, T, Hk, Dk), torch.zeros(B, T, Hv, Dv), torch.zeros(B, T, Hv),
           torch.zeros(B, T, Hv), torch.zeros(B, Hv, Dk, Dv)]
    outs = [torch.empty(B, T, Hv, Dv), torch.empty(B, Hv, Dk, Dv)]
    attrs = {"scale": 0.35, "use_qk_l2norm": 1}
    calls, _ = recorded_launches(run_launcher, (GATED_DELTA_RULE, attrs, ins, outs, tactic), {})
    assert [c[0].__name__ for c in calls] == kernels
    if chunk:
        assert calls[0][3]["BT"] == chunk


def test_gated_delta_rule_enqueue_writes_into_tensorrts_buffers():
    """The kernel's output arguments are TensorRT's buffers themselves (no launcher-owned result copied over)."""
    from deploykit.plugins.aot import recorded_launches
    from deploykit.plugins.tensorrt_v3 import run_launcher

    from deploykit.ops.contract import GATED_DELTA_RULE

    B, T, Hk, Hv, Dk, Dv = 2, 1, 2, 4, 8, 8
    ins = [torch.zeros(B, T, Hk, Dk), torch.zeros(B, T, Hk, Dk), torch.zeros(B, T, Hv, Dv), torch.zeros(B, T, Hv),
           torch.zeros(B, T, Hv), torch.zeros(B, Hv, Dk, Dv)]
    outs = [torch.empty(B, T, Hv, Dv), torch.empty(B, Hv, Dk, Dv)]
    calls, _ = recorded_launches(run_launcher, (GATED_DELTA_RULE, {"scale": 0.35, "use_qk_l2norm": 1}, ins, outs), {})
    (_, _, args, _), = calls
    assert args[-2] is outs[0] and args[-1] is outs[1]  # the kernel's o and ht


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


def _run_stages(lowered, plugins, values: dict) -> list[str]:
    """Each stage node of `lowered`, in graph order, through run_launcher with its plugin's decoded attributes,
    into NaN-filled buffers of the contract's shapes (TensorRT's); `values` maps tensor names and is updated.
    Returns the op types run."""
    from deploykit.plugins.tensorrt_v3 import run_launcher

    from deploykit.ops.contract import STAGE_OPS

    dtypes = {"T": torch.float16, "float32": torch.float32, "int32": torch.int32}
    ran = []
    for node in lowered.graph.node:
        if node.domain != "deploykit" or node.op_type not in STAGE_OPS:
            continue
        spec, plugin = STAGE_OPS[node.op_type], plugins[node.op_type]
        ins = [values[n] for n in node.input]
        shapes = spec.infer_shapes([tuple(t.shape) for t in ins], plugin.attrs)
        fill = lambda dt: float("nan") if dt.is_floating_point else -1  # noqa: E731  (unwritten shows)
        outs = [torch.full(s, fill(dtypes[o.dtype]), dtype=dtypes[o.dtype])
                for s, o in zip(shapes, spec.outputs, strict=True)]
        run_launcher(spec, plugin.attrs, ins, outs)
        values.update(zip(node.output, outs, strict=True))
        ran.append(node.op_type)
    return ran


@pytest.mark.parametrize("max_tokens", [1, 16])
def test_moe_stage_plugins_enqueue_in_graph_order_matches_naive(backend, save, max_tokens):
    """The lowered MoE as TensorRT parsed it: each stage plugin's attributes decoded from TensorRT's fields, its
    launcher run through run_launcher into buffers of the shapes the contract gives, in the graph's order, then
    the graph's ReduceSum + cast. The result is the MoE reference."""
    from contract_graphs import contract_model

    from deploykit.build.builder import parse_onnx
    from deploykit.build.lower import lower_moe
    from deploykit.ops.moe import naive_moe

    lowered, how = lower_moe(contract_model(body=False), max_tokens)
    plugins = _plugins_of(backend, parse_onnx(save(lowered), backend, plugins=True))
    gen = torch.Generator().manual_seed(2)
    N, H, E, I = 3, 16, 4, 6  # contract_model's sizes, top_k 2
    inputs = {"moe_hidden": torch.randn(N, H, generator=gen), "moe_router_logits": torch.randn(N, E, generator=gen),
              "moe_gate_up": torch.randn(E, 2 * I, H, generator=gen) / 4, "moe_down": torch.randn(E, H, I, generator=gen) / 4}
    values = {k: v.to(torch.float16) for k, v in inputs.items()}  # contract_model's default dtype
    _run_stages(lowered, plugins, values)
    out = values["moe_output"] if how.path == "pairs" else values["moe_node/pair_out"].sum(1).to(torch.float16)
    want = naive_moe(*(values[k] for k in inputs), 2, 1)
    torch.testing.assert_close(out, want, atol=4 * 2**-10 * want.abs().max().item(), rtol=0)
    assert sorted(plugins) == (["GatedDeltaRule", "MoEPairDown", "MoEPairGateUp"] if how.path == "pairs" else
                               ["GatedDeltaRule", "MoEAlign", "MoEDown", "MoEGateUp", "MoERoute"])


def test_gdn_stage_plugins_enqueue_in_graph_order_match_naive(backend, save):
    """The lowered GatedDeltaRule (--gdn-stages, a prefill-only engine: the three stages without an If) as
    TensorRT parsed it: each stage plugin's attributes decoded from TensorRT's fields, its launcher run through
    run_launcher into buffers of the contract's shapes, in graph order, on a 70-token fp16 prompt. The result is
    the token-by-token reference."""
    from contract_graphs import contract_model

    from deploykit.build.builder import parse_onnx
    from deploykit.build.lower import lower_gdn
    from deploykit.ops.gated_delta_rule import naive_gated_delta_rule

    lowered, how = lower_gdn(contract_model(body=False), 64, 128)
    assert how.mode == "stages"
    plugins = _plugins_of(backend, parse_onnx(save(lowered), backend, plugins=True))
    gen = torch.Generator().manual_seed(3)
    B, T, HK, HV, D = 2, 70, 2, 4, 8  # contract_model's GDN sizes
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    inputs = {"gdr_q": r(B, T, HK, D).half(), "gdr_k": r(B, T, HK, D).half(), "gdr_v": r(B, T, HV, D).half(),
              "gdr_g": -torch.rand(B, T, HV, generator=gen) * 0.5, "gdr_beta": torch.rand(B, T, HV, generator=gen).half(),
              "gdr_initial_state": r(B, HV, D, D)}
    values = dict(inputs)
    assert _run_stages(lowered, plugins, values) == ["GatedDeltaPrep", "GatedDeltaStates", "GatedDeltaOut"]
    want_o, want_h = naive_gated_delta_rule(*inputs.values(), 0.35, 1)  # contract_model's scale
    torch.testing.assert_close(values["gdr_final_state"], want_h, atol=1e-5 * want_h.abs().max().item(), rtol=0)
    torch.testing.assert_close(values["gdr_output"], want_o, atol=2**-10 * want_o.abs().max().item(), rtol=2**-10)
