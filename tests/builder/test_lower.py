"""The builder's MoE lowering (deploykit/build/lower.py): the stage graph computes what the MoE node does, and
TensorRT (for RTX, on the CPU) parses and builds it with one plugin per stage."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from contract_graphs import contract_model
from onnx import TensorProto
from onnx import helper as oh
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from deploykit.build.builder import BuildOptions, build_engine
from deploykit.build.lower import MoELowering, choose_lowering, lower_moe
from deploykit.build.profiles import default_profiles
from deploykit.errors import DeployKitError
from deploykit.export.schemas import register_schemas
from deploykit.ops import moe as ref
from deploykit.ops.contract import DOMAIN, STAGE_OPS

NAIVE_STAGES = {
    "MoERoute": ref.naive_moe_route,
    "MoEAlign": ref.naive_moe_align,
    "MoEGateUp": ref.naive_moe_gate_up,
    "MoEDown": ref.naive_moe_down,
    "MoEPairGateUp": ref.naive_moe_pair_gate_up,
    "MoEPairDown": ref.naive_moe_pair_down,
}


def _stage_runner(spec):
    """An onnx.reference op for a stage op that calls its naive torch reference (contract argument order)."""
    names = [a.name for a in spec.attributes if a.name != "plugin_version"]
    fn = NAIVE_STAGES[spec.name]

    def _run(self, *inputs, **_):
        attrs = [getattr(self, n) for n in names]  # OpRun keeps each node attribute as an instance attribute
        out = fn(*(torch.from_numpy(np.asarray(x)) for x in inputs), *attrs)
        return tuple(o.numpy() for o in (out if isinstance(out, tuple) else (out,)))

    return type(spec.name, (OpRun,), {"op_domain": DOMAIN, "_run": _run})


def _moe_model(H, E, I, top_k, elem=TensorProto.FLOAT):
    vi = lambda n, s: oh.make_tensor_value_info(n, elem, s)
    node = oh.make_node("MoE", ["x", "logits", "gate_up", "down"], ["y"], domain=DOMAIN, name="moe0",
                        top_k=top_k, norm_topk_prob=1, plugin_version="1", plugin_namespace=DOMAIN)
    graph = oh.make_graph([node], "moe", [vi("x", ["N", H]), vi("logits", ["N", E]), vi("gate_up", [E, 2 * I, H]),
                                          vi("down", [E, H, I])], [vi("y", ["N", H])])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 20), oh.make_opsetid(DOMAIN, 1)])


def _inputs(N, H, E, I, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    return [r(N, H).to(dtype), r(N, E).to(dtype), (r(E, 2 * I, H) * H**-0.5).to(dtype),
            (r(E, H, I) * I**-0.5).to(dtype)]


def test_choose_lowering_follows_the_launchers_rules():
    # pairs up to PAIRS_MAX_TOKENS = 4 tokens; grouped blocks of 16 rows while pairs <= 2 experts' worth
    assert choose_lowering(4, 256, 8) == MoELowering("pairs")
    assert choose_lowering(5, 256, 8) == MoELowering("grouped", 16)  # 40 pairs, 256 experts
    assert choose_lowering(64, 256, 8) == MoELowering("grouped", 16)  # 512 pairs = 2 x 256
    assert choose_lowering(65, 256, 8) == MoELowering("grouped", 64)
    assert choose_lowering(4096, None, 8) == MoELowering("grouped", 64)


@pytest.mark.parametrize("max_tokens,path,block_m", [(4, "pairs", 0), (8, "grouped", 16), (100, "grouped", 64)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_lowered_graph_computes_the_moe_reference(max_tokens, path, block_m, dtype):
    """The lowered graph, run node by node by onnx.reference with each stage's naive reference, equals
    naive_moe (the contract's MoE) on the same inputs: the composition, the slot layout and the standard
    ReduceSum/CastLike tail are right."""
    N, H, E, I, K = 7, 16, 12, 4, 3
    elem = TensorProto.FLOAT if dtype == torch.float32 else TensorProto.FLOAT16
    lowered, how = lower_moe(_moe_model(H, E, I, K, elem), max_tokens)
    assert (how.path, how.block_m) == (path, block_m)
    register_schemas()
    onnx.checker.check_model(lowered, full_check=True)  # the stage schemas' shape inference, strict
    assert not [n for n in lowered.graph.node if n.op_type == "MoE"]
    x = _inputs(N, H, E, I, dtype, seed=max_tokens)
    want = ref.naive_moe(*x, K, 1)
    ev = ReferenceEvaluator(lowered, new_ops=[_stage_runner(s) for s in STAGE_OPS.values()])
    (got,) = ev.run(None, dict(zip(["x", "logits", "gate_up", "down"], (t.numpy() for t in x))))
    assert got.dtype == want.numpy().dtype and got.shape == (N, H)
    # fp32: the same products summed in the same order; fp16: the stages round `inter` to fp16 (as the kernels
    # and transformers do), naive_moe keeps it in fp32
    tol = 1e-6 if dtype == torch.float32 else 4 * 2**-10
    scale = want.float().abs().max()
    assert (torch.from_numpy(got).float() - want.float()).abs().max() <= tol * scale


def test_model_without_moe_is_returned_unchanged():
    model = contract_model(body=False)
    del model.graph.node[1]  # drop the MoE node
    assert lower_moe(model, 8) == (model, None)


def test_old_opset_is_a_clear_error():
    model = _moe_model(8, 4, 2, 2)
    model.opset_import[0].version = 13
    with pytest.raises(DeployKitError, match="opset 13 is older than 15"):
        lower_moe(model, 8)


@pytest.mark.parametrize("max_tokens,want", [
    (1, ["GatedDeltaRule", "MoEPairGateUp", "MoEPairDown"]),
    (16, ["GatedDeltaRule", "MoERoute", "MoEAlign", "MoEGateUp", "MoEDown"]),
])
def test_tensorrt_builds_the_stage_plugins(backend, save, max_tokens, want):
    """TensorRT's parser maps every stage node to its plugin and the builder accepts their derived output dims
    (IExprBuilder CEIL_DIV / MIN / PROD); the engine's MoE output keeps the MoE node's shape and dtype; the
    lowered copy parsed beside the model is gone afterwards."""
    path = save(contract_model("bfloat16", body=True))
    options = BuildOptions(profiles=default_profiles(max_batch=2, max_tokens=max_tokens, max_past=32),
                           moe_stages=True)
    result = build_engine(path, options=options)
    m = result.manifest
    assert [p.name for p in m.plugins] == want
    assert m.layer_types["PLUGIN_V3"] == len(want)
    assert m.moe_stages == ("pairs" if max_tokens == 1 else "grouped (block_m=64)")
    if max_tokens > 1:
        assert m.layer_types["REDUCE"] == 1 and m.layer_types["CAST"] == 1
    out = {o.name: (o.shape, o.dtype) for o in m.outputs}
    assert out["moe_output"] == ([-1, 16], "BF16")  # [N, H] of contract_model, N dynamic
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        [path.name, result.engine_path.name, result.manifest_path.name])


def test_moe_stages_need_plugins(save):
    path = save(contract_model(body=True))
    with pytest.raises(DeployKitError, match="plugins are disabled"):
        build_engine(path, options=BuildOptions(plugins=False, moe_stages=True))


def test_unwritable_export_folder_is_a_clear_error(save, monkeypatch):
    """The lowered copy must sit beside model.onnx (its weights are referenced relative to it). The OS refusal
    is simulated: CI runs as root, which writes into read-only folders."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    path = save(contract_model(body=True))
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(DeployKitError, match=r"cannot write the lowered model beside model.onnx \(Permission denied\)"):
        build_engine(path, options=BuildOptions(moe_stages=True))
