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
from deploykit.ops.gated_delta_rule import naive_gated_delta_rule
from deploykit.ops.gated_delta_rule import stages as gdn_ref

NAIVE_STAGES = {
    "MoERoute": ref.naive_moe_route,
    "MoEAlign": ref.naive_moe_align,
    "MoEGateUp": ref.naive_moe_gate_up,
    "MoEDown": ref.naive_moe_down,
    "MoEPairGateUp": ref.naive_moe_pair_gate_up,
    "MoEPairDown": ref.naive_moe_pair_down,
    "GatedDeltaPrep": gdn_ref.naive_gated_delta_prep,
    "GatedDeltaStates": gdn_ref.naive_gated_delta_states,
    "GatedDeltaOut": gdn_ref.naive_gated_delta_out,
    "GatedDeltaRule": naive_gated_delta_rule,  # the node an If keeps for short calls
}


def _stage_runner(spec, calls: list | None = None):
    """An onnx.reference op for a stage op that calls its naive torch reference (contract argument order);
    each call's op name is appended to `calls`."""
    names = [a.name for a in spec.attributes if a.name != "plugin_version"]
    fn = NAIVE_STAGES[spec.name]

    def _run(self, *inputs, **_):
        attrs = [getattr(self, n) for n in names]  # OpRun keeps each node attribute as an instance attribute
        out = fn(*(torch.from_numpy(np.asarray(x)) for x in inputs), *attrs)
        if calls is not None:
            calls.append(spec.name)
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


def test_choose_lowering_follows_the_launchers_rules_and_the_profiles_range():
    # a decode profile beside a prefill one: an If between the two sequences
    assert choose_lowering(64, 256, 8, min_tokens=1) == MoELowering("conditional", 16)
    assert choose_lowering(64, 256, 8, min_tokens=5) == MoELowering("grouped", 16)
    assert choose_lowering(4, 256, 8, min_tokens=1) == MoELowering("pairs")
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
    (got,) = ev.run(None, dict(zip(["x", "logits", "gate_up", "down"], (t.numpy() for t in x), strict=True)))
    assert got.dtype == want.numpy().dtype and got.shape == (N, H)
    # fp32: the same products summed in the same order; fp16: the stages round `inter` to fp16 (as the kernels
    # and transformers do), naive_moe keeps it in fp32
    tol = 1e-6 if dtype == torch.float32 else 4 * 2**-10
    scale = want.float().abs().max()
    assert (torch.from_numpy(got).float() - want.float()).abs().max() <= tol * scale


@pytest.mark.parametrize("N,branch", [(3, "pairs"), (7, "grouped")])
def test_conditional_lowering_picks_the_sequence_by_the_token_count(N, branch):
    """Prefill and decode profiles (1 to 100 tokens): an If on N <= 4 between the two sequences. Run by
    onnx.reference with the naive stages, it equals naive_moe, through the pairs at 3 tokens and the grouped
    sequence at 7."""
    H, E, I, K = 16, 12, 4, 3
    lowered, how = lower_moe(_moe_model(H, E, I, K), 100, min_tokens=1)
    assert (how.path, how.block_m) == ("conditional", 64)
    register_schemas()
    onnx.checker.check_model(lowered, full_check=True)
    assert [n.op_type for n in lowered.graph.node][-1] == "If"
    calls: list[str] = []
    ev = ReferenceEvaluator(lowered, new_ops=[_stage_runner(s, calls) for s in STAGE_OPS.values()])
    x = _inputs(N, H, E, I, torch.float32, seed=N)
    (got,) = ev.run(None, dict(zip(["x", "logits", "gate_up", "down"], (t.numpy() for t in x), strict=True)))
    want = ref.naive_moe(*x, K, 1)
    assert calls == (["MoEPairGateUp", "MoEPairDown"] if branch == "pairs" else
                     ["MoERoute", "MoEAlign", "MoEGateUp", "MoEDown"])
    assert (torch.from_numpy(got) - want).abs().max() <= 1e-6 * want.abs().max()


def test_model_without_moe_is_returned_unchanged():
    model = contract_model(body=False)
    del model.graph.node[1]  # drop the MoE node
    assert lower_moe(model, 8) == (model, None)


def test_old_opset_is_a_clear_error():
    model = _moe_model(8, 4, 2, 2)
    model.opset_import[0].version = 13
    with pytest.raises(DeployKitError, match="opset 13 is older than 15"):
        lower_moe(model, 8)


def _profiles(min_tokens: int, max_tokens: int):
    """One profile of 1-2 sequences of min_tokens..max_tokens new tokens (default_profiles adds decode, T = 1)."""
    from deploykit.build.profiles import DimRange, ProfileSpec

    return [ProfileSpec(name="p", batch=DimRange(min=1, opt=2, max=2),
                        tokens=DimRange(min=min_tokens, opt=max_tokens, max=max_tokens),
                        past=DimRange(min=0, opt=0, max=32))]


PAIRS = ["MoEPairGateUp", "MoEPairDown"]
GROUPED = ["MoERoute", "MoEAlign", "MoEGateUp", "MoEDown"]


@pytest.mark.parametrize("profiles,want,how", [
    (default_profiles(max_batch=2, max_tokens=1, max_past=32), PAIRS, "pairs"),
    (_profiles(8, 16), GROUPED, "grouped (block_m=64)"),
    (default_profiles(max_batch=2, max_tokens=16, max_past=32), PAIRS + GROUPED,
     "conditional (pairs for N <= 4, else grouped (block_m=64))"),
], ids=["decode-only", "prefill-only", "prefill-and-decode"])
def test_tensorrt_builds_the_stage_plugins(backend, save, profiles, want, how):
    """TensorRT's parser maps every stage node to its plugin (inside an If's branches too) and the builder
    accepts their derived output dims (IExprBuilder CEIL_DIV / MIN / PROD); the engine's MoE output keeps the
    MoE node's shape and dtype; the lowered copy parsed beside the model is gone afterwards."""
    path = save(contract_model("bfloat16", body=True))
    result = build_engine(path, options=BuildOptions(profiles=profiles, moe_stages=True))
    m = result.manifest
    assert sorted(p.name for p in m.plugins) == sorted(["GatedDeltaRule", *want])
    assert m.layer_types["PLUGIN_V3"] == 1 + len(want)
    assert m.moe_stages == how
    assert m.layer_types.get("CONDITION", 0) == how.startswith("conditional")
    if how != "pairs":  # the grouped tail; an If adds one cast of its own (TensorRT's, on the shape value)
        assert m.layer_types["REDUCE"] == 1 and m.layer_types["CAST"] == 1 + how.startswith("conditional")
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


def _stage_tensors(lowered, how):
    """(name, elem type) of every stage-to-stage tensor of the lowered `moe0` node."""
    i32, f32 = TensorProto.INT32, TensorProto.FLOAT
    if how.path == "pairs":
        return [("moe0/inter", None), ("moe0/ids", i32), ("moe0/weights", f32)]
    return [("moe0/ids", i32), ("moe0/weights", f32), ("moe0/slots", i32), ("moe0/blocks", i32),
            ("moe0/inter", None), ("moe0/pair_out", f32)]


def test_stage_shapes_agree_across_tensorrt_onnx_inference_and_the_hand_derived_rule(backend, save):
    """For random static shapes: TensorRT's view of every intermediate (the plugins' get_output_shapes through
    IExprBuilder), ONNX shape inference with the stage schemas, and the sizes derived by hand from the stage
    definitions (pair p = n*K + j; NB = ceil(N*K / block_m) + min(E, N*K) blocks of block_m slots)."""
    from deploykit.build.builder import parse_onnx

    rng = np.random.default_rng(5)
    register_schemas()
    seen = set()
    draws = [(n, e, int(rng.integers(1, e + 1)))
             for n, e in zip(rng.integers(1, 41, 6), rng.integers(2, 10, 6), strict=True)]
    # and: grouped with 16-row blocks (N*K <= 2E); grouped with fewer pairs than experts (min(E, P) = P); pairs
    draws += [(6, 9, 2), (5, 9, 1), (3, 5, 2)]
    for case, (N, E, K) in enumerate(draws):
        N, E, K = int(N), int(E), int(K)
        H, I = int(rng.choice([16, 48])), int(rng.integers(1, 9))  # noqa: E741
        model = _moe_model(H, E, I, K, TensorProto.FLOAT16)
        for vi in model.graph.input:
            vi.type.tensor_type.shape.dim[0].dim_value = N if vi.name in ("x", "logits") else vi.type.tensor_type.shape.dim[0].dim_value
        model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = N
        lowered, how = lower_moe(model, max_tokens=N)
        seen.add((how.path, how.block_m))
        P, bm = N * K, how.block_m
        nb = -(-P // bm) + min(E, P) if bm else 0
        by_hand = {"moe0/ids": [N, K], "moe0/weights": [N, K], "moe0/inter": [N, K, I] if bm == 0 else [nb * bm, I],
                   "moe0/slots": [nb * bm], "moe0/blocks": [nb], "moe0/pair_out": [N, K, H], "y": [N, H]}
        for name, elem in _stage_tensors(lowered, how):
            lowered.graph.output.append(oh.make_tensor_value_info(name, elem or TensorProto.FLOAT16, None))
        parsed = parse_onnx(save(lowered, f"case{case}.onnx"), backend, plugins=True)
        from_trt = {t.name: t.shape for t in parsed.report.outputs}
        inferred = onnx.shape_inference.infer_shapes(lowered, strict_mode=True)
        from_onnx = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
                     for vi in (*inferred.graph.value_info, *inferred.graph.output)}
        assert set(from_trt) == {"y", *(n for n, _ in _stage_tensors(lowered, how))}
        for name in from_trt:
            assert from_trt[name] == by_hand[name] == from_onnx[name], (case, name, N, E, K, how)
    assert seen == {("pairs", 0), ("grouped", 16), ("grouped", 64)}  # the draws cover every sequence
