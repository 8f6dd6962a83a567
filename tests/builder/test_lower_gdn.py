"""The builder's GatedDeltaRule lowering (deploykit/build/lower.py `lower_gdn`, `deploykit build --gdn-stages`):
the stages, or an If on T >= 64 around them, compute what the node does, and TensorRT (for RTX, on the CPU)
parses and builds either form with one plugin per stage."""

from __future__ import annotations

import onnx
import pytest
import torch
from contract_graphs import contract_model
from onnx import TensorProto
from onnx import helper as oh
from onnx.reference import ReferenceEvaluator
from test_lower import _stage_runner

from deploykit.build.builder import BuildOptions, build_engine
from deploykit.build.lower import GdnLowering, choose_gdn_lowering, lower_gdn
from deploykit.build.profiles import DimRange, ProfileSpec, default_profiles
from deploykit.errors import DeployKitError
from deploykit.export.schemas import register_schemas
from deploykit.ops.contract import DOMAIN, GATED_DELTA_RULE, STAGE_OPS
from deploykit.ops.gated_delta_rule import naive_gated_delta_rule

STAGES = ["GatedDeltaPrep", "GatedDeltaStates", "GatedDeltaOut"]
HK, HV, DK, DV = 1, 2, 16, 8


def _gdn_model(elem=TensorProto.FLOAT):
    """One GatedDeltaRule node on graph inputs, B and T dynamic."""
    dims = {"B": "B", "T": "T", "Hk": HK, "Hv": HV, "Dk": DK, "Dv": DV}
    vi = lambda t: oh.make_tensor_value_info(t.name, elem if t.dtype == "T" else TensorProto.FLOAT,  # noqa: E731
                                             [dims[d] for d in t.dims])
    node = oh.make_node("GatedDeltaRule", [t.name for t in GATED_DELTA_RULE.inputs], ["o", "ht"], domain=DOMAIN,
                        name="gdn0", scale=DK**-0.5, use_qk_l2norm=1, plugin_version="1", plugin_namespace=DOMAIN)
    outs = [oh.make_tensor_value_info("o", elem, ["B", "T", HV, DV]),
            oh.make_tensor_value_info("ht", TensorProto.FLOAT, ["B", HV, DK, DV])]
    graph = oh.make_graph([node], "gdn", [vi(t) for t in GATED_DELTA_RULE.inputs], outs)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 20), oh.make_opsetid(DOMAIN, 1)])


def _inputs(B, T, seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return [r(B, T, HK, DK), r(B, T, HK, DK), r(B, T, HV, DV), -torch.rand(B, T, HV, generator=g) * 0.5,
            torch.rand(B, T, HV, generator=g), r(B, HV, DK, DV)]


def test_choose_gdn_lowering_by_the_profiles_token_range():
    assert choose_gdn_lowering(1, 63) is None  # no call reaches a whole chunk: the node's own kernel
    assert choose_gdn_lowering(64, 8192) == GdnLowering("stages")
    assert choose_gdn_lowering(1, 64) == GdnLowering("conditional")


@pytest.mark.parametrize("min_tokens,T,branch", [(1, 70, "stages"), (1, 5, "node"), (64, 130, "stages")])
def test_lowered_graph_computes_the_gated_delta_rule(min_tokens, T, branch):
    """Run node by node by onnx.reference, each stage (and the kept node) by its naive reference: the lowered
    graph equals naive_gated_delta_rule on the same inputs, and the If sends T >= 64 through the stages."""
    lowered, how = lower_gdn(_gdn_model(), min_tokens, 8192)
    assert how.mode == ("stages" if min_tokens >= 64 else "conditional")
    register_schemas()
    onnx.checker.check_model(lowered, full_check=True)
    top = [n.op_type for n in lowered.graph.node]
    assert top == STAGES if how.mode == "stages" else top[-1] == "If" and "GatedDeltaRule" not in top
    calls: list[str] = []
    ev = ReferenceEvaluator(lowered, new_ops=[_stage_runner(s, calls) for s in (*STAGE_OPS.values(), GATED_DELTA_RULE)
                                              if s.stage_of in (None, "GatedDeltaRule")])
    x = _inputs(2, T, seed=T)
    o, ht = ev.run(None, dict(zip([t.name for t in GATED_DELTA_RULE.inputs], (t.numpy() for t in x), strict=True)))
    ro, rh = naive_gated_delta_rule(*x, DK**-0.5, 1)
    assert calls == (STAGES if branch == "stages" else ["GatedDeltaRule"])
    rel = lambda a, b: (torch.from_numpy(a) - b).abs().max() / b.abs().max()  # noqa: E731
    assert rel(o, ro) <= 1e-5 and rel(ht, rh) <= 1e-5


def test_model_without_a_long_enough_profile_is_returned_unchanged():
    model = _gdn_model()
    assert lower_gdn(model, 1, 63) == (model, None)
    no_gdn = contract_model(body=False)
    del no_gdn.graph.node[0]  # drop the GatedDeltaRule node
    assert lower_gdn(no_gdn, 1, 8192) == (no_gdn, None)


def _prefill_only(max_tokens: int) -> list[ProfileSpec]:
    return [ProfileSpec(name="prefill", batch=DimRange(min=1, opt=1, max=2),
                        tokens=DimRange(min=64, opt=max_tokens, max=max_tokens), past=DimRange(min=0, opt=0, max=64))]


@pytest.mark.parametrize("how", ["conditional", "stages"])
def test_tensorrt_builds_the_gdn_stage_plugins(backend, save, how):
    """TensorRT's parser maps the stage nodes to plugins, inside an If's branch too (both branches are built:
    the kept GatedDeltaRule as well), and the builder accepts the derived chunk dims (IExprBuilder CEIL_DIV);
    the engine's outputs keep the node's shapes and dtypes; the lowered copy is gone afterwards."""
    path = save(contract_model("float16", body=True, dims={"Dk": 16, "Dv": 16}))
    profiles = default_profiles(2, 128, 64) if how == "conditional" else _prefill_only(128)
    result = build_engine(path, options=BuildOptions(profiles=profiles, gdn_stages=True))
    m = result.manifest
    names = sorted(p.name for p in m.plugins)
    assert names == sorted([*STAGES, "MoE", *(["GatedDeltaRule"] if how == "conditional" else [])])
    assert m.layer_types["PLUGIN_V3"] == len(names)
    assert m.layer_types.get("CONDITION", 0) == (how == "conditional")
    assert m.gdn_stages.startswith(how)
    out = {o.name: (o.shape, o.dtype) for o in m.outputs}
    assert out["gdr_output"] == ([-1, -1, 4, 16], "HALF") and out["gdr_final_state"] == ([-1, 4, 16, 16], "FLOAT")
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        [path.name, result.engine_path.name, result.manifest_path.name])


def test_gdn_stages_need_plugins(save):
    path = save(contract_model(body=True))
    with pytest.raises(DeployKitError, match="--gdn-stages replaces nodes by plugins, but plugins are disabled"):
        build_engine(path, options=BuildOptions(plugins=False, gdn_stages=True))


def test_head_dims_the_stage_kernels_do_not_take_are_refused():
    """The stage outputs are Dk / Dv wide and the kernels' tiles powers of two: a clear error at lowering time,
    not a failed build."""
    model = _gdn_model()
    for vi in model.graph.input:
        if vi.name in ("q", "k", "initial_state"):  # [B, T, Hk, Dk] twice, [B, Hv, Dk, Dv]
            vi.type.tensor_type.shape.dim[3 if vi.name != "initial_state" else 2].dim_value = 24
    with pytest.raises(DeployKitError, match="has Dk = 24; its stage kernels need power-of-two head dims"):
        lower_gdn(model, 1, 128)
