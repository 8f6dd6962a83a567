"""deploykit's datacenter-TensorRT QDP registrations (plugins/*/qdp.py), run through NVIDIA's own
`tensorrt.plugin` inside a real TensorRT-for-RTX parse and build on the CPU (tests/builder/qdp_bridge.py says how).

Each plugin's launch (grid, block, scalar arguments, kernel) is compared with what the op's torch launcher
launches for the same shapes: the launchers are the code whose numerics the kernel tests check against the
naive references, so a plugin that launches the same kernel the same way computes the same thing. The compiled
PTX's parameter list is compared with the argument order TensorRT uses for AOT plugins (tensor inputs, the
extra scalars, tensor outputs; `tensorrt.plugin.aot_impl`'s documentation), followed by the two scratch
pointers Triton appends.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from deploykit.plugins.aot import string_attribute
from onnx import TensorProto
from onnx import helper as oh

from deploykit.build.lower import lower_gdn, lower_moe
from deploykit.ops.contract import (
    ALL_OPS,
    CAUSAL_CONV1D,
    DOMAIN,
    GATED_DELTA_OUT,
    GATED_DELTA_PREP,
    GATED_DELTA_RULE,
    GATED_DELTA_STATES,
    MOE,
    PLUGIN_OPS,
)

pytest.importorskip("tensorrt_rtx_bindings")
if importlib.util.find_spec("tensorrt_bindings") is None:
    pytest.skip("tensorrt-cu12-bindings (NVIDIA's tensorrt.plugin) is not installed", allow_module_level=True)

BRIDGE = Path(__file__).with_name("qdp_bridge.py")
ELEM = {"float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16, "float32": TensorProto.FLOAT}
TORCH = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32}
GDN_ATTRS = {"scale": 0.125, "use_qk_l2norm": 1}
# B * Hv = 68 >= 64: the launcher's tiles equal the AOT plugin's, which are chosen for a batch of 64
GDN_DIMS = {"B": 17, "Hk": 2, "Dk": 32, "Hv": 4, "Dv": 64}


def _node_model(spec, dims: dict, attrs: dict, dtype: str):
    """One contract node on graph inputs; `dims` maps each symbol to an int (static) or a name (dynamic)."""
    act = ELEM[dtype]
    elem = lambda t: act if t.dtype == "T" else TensorProto.FLOAT  # noqa: E731
    ins = [oh.make_tensor_value_info(t.name, elem(t), [dims[d] for d in t.dims]) for t in spec.inputs]
    outs = [oh.make_tensor_value_info(t.name, elem(t), None) for t in spec.outputs]
    node = oh.make_node(spec.name, [t.name for t in spec.inputs], [t.name for t in spec.outputs], name="op0",
                        domain=DOMAIN, plugin_version=spec.plugin_version, plugin_namespace=DOMAIN, **attrs)
    graph = oh.make_graph([node], spec.name, ins, outs)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 20), oh.make_opsetid(DOMAIN, 1)])


def _moe_stages(N, H, E, I, top_k, dtype, max_tokens):  # noqa: E741
    model = _node_model(MOE, {"N": N, "H": H, "E": E, "I2": 2 * I, "I": I}, {"top_k": top_k, "norm_topk_prob": 1},
                        dtype)
    return lower_moe(model, max_tokens=max_tokens)[0]


CASES = {  # name -> (model, what the launcher is told beyond the attributes)
    "moe_pairs": lambda: _moe_stages(3, 32, 8, 16, 2, "float16", 3),
    "moe_grouped16": lambda: _moe_stages(9, 32, 8, 16, 2, "bfloat16", 9),
    "moe_grouped64": lambda: _moe_stages(40, 64, 6, 32, 3, "float16", 40),
    "moe_dynamic": lambda: _moe_stages("N", 32, 8, 16, 2, "float16", 64),
    "moe_jit": lambda: _node_model(MOE, {"N": "N", "H": 32, "E": 8, "I2": 32, "I": 16},
                                   {"top_k": 2, "norm_topk_prob": 1}, "bfloat16"),
    "gdn_prefill": lambda: _node_model(GATED_DELTA_RULE, {**GDN_DIMS, "T": 70}, GDN_ATTRS, "bfloat16"),
    "gdn_decode": lambda: _node_model(GATED_DELTA_RULE, {**GDN_DIMS, "T": 1}, GDN_ATTRS, "float16"),
    "gdn_dynamic": lambda: _node_model(GATED_DELTA_RULE, {**GDN_DIMS, "B": "B", "T": "T"}, GDN_ATTRS, "float16"),
    "gdn_conditional": lambda: lower_gdn(
        _node_model(GATED_DELTA_RULE, {**GDN_DIMS, "B": "B", "T": "T"}, GDN_ATTRS, "bfloat16"), 1, 8192)[0],
    "gdn_prep": lambda: _node_model(GATED_DELTA_PREP, {**GDN_DIMS, "T": 70}, GDN_ATTRS, "bfloat16"),
    "gdn_states": lambda: _node_model(GATED_DELTA_STATES, {**GDN_DIMS, "T": 70, "NT": 2, "C": 64},
                                      {"use_qk_l2norm": 1}, "float16"),
    "gdn_out": lambda: _node_model(GATED_DELTA_OUT, {**GDN_DIMS, "T": 130, "NT": 3, "C": 64}, GDN_ATTRS, "bfloat16"),
    "conv_decode": lambda: _node_model(CAUSAL_CONV1D, {"B": 3, "C": 300, "T": 1, "Km1": 3, "K": 4},
                                       {"activation": "silu"}, "bfloat16"),
    "conv_prefill": lambda: _node_model(CAUSAL_CONV1D, {"B": 2, "C": 96, "T": 100, "Km1": 3, "K": 4},
                                        {"activation": "none"}, "float16"),
}

# Nodes whose fixed dims their launchers would refuse: an ahead-of-time kernel checks nothing when it runs, so
# the register function refuses them when the engine is built. name -> (model, what it is refused for)
REFUSED = {
    "gdn_heads": (lambda: _node_model(GATED_DELTA_RULE, {**GDN_DIMS, "Hv": 3, "T": "T"}, GDN_ATTRS,
                                      "float16"),
                  "GatedDeltaRule: needs Hv % Hk == 0, got Hv=3, Hk=2"),
    "gdn_states_chunk": (lambda: _node_model(GATED_DELTA_STATES, {**GDN_DIMS, "T": "T", "NT": "NT", "C": 32},
                                             {"use_qk_l2norm": 1}, "float16"),
                         "GatedDeltaStates: needs C == 64, got C=32"),
    "moe_jit_top_k": (lambda: _node_model(MOE, {"N": "N", "H": 32, "E": 8, "I2": 32, "I": 16},
                                          {"top_k": 9, "norm_topk_prob": 1}, "bfloat16"),
                      "MoE: needs 1 <= top_k <= E, got top_k=9, E=8"),
}


@pytest.fixture(scope="module")
def bridged(tmp_path_factory):
    """{case: TensorRT's parse/build result and what the QDP plugins returned}, from one bridge process."""
    import onnx

    folder = tmp_path_factory.mktemp("qdp")
    paths = {}
    for name, make in {**CASES, **{k: make for k, (make, _) in REFUSED.items()}}.items():
        paths[name] = str(folder / f"{name}.onnx")
        onnx.save(make(), paths[name])
    out = folder / "records.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the bridge compiles real PTX
    run = subprocess.run([sys.executable, str(BRIDGE), str(out), *paths.values()], capture_output=True, text=True,
                         timeout=900, env=env, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(out.read_text())
    return {name: results[path] for name, path in paths.items()}


def _launches(rec) -> list[dict]:
    """The AOT plugins' records (build steps and launches)."""
    return [r for r in _described(rec) if not r["jit"]]


def _described(rec) -> list[dict]:
    for r in rec["records"]:
        assert "error" not in r, r["error"]
    return [r for r in rec["records"] if "attrs" in r]


def _created(rec) -> list[dict]:
    return [r for r in rec["records"] if "fields" in r]


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_plugins_refuse_fixed_dims_their_launchers_refuse(bridged, case):
    rec = bridged[case]
    assert not rec["parsed"], rec["log"]
    refused = [r["refused"] for r in rec["records"] if "refused" in r]
    assert refused and refused[0].startswith("ContractError: " + REFUSED[case][1]), refused


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_node_parses_and_builds_through_the_qdp_plugins(bridged, case):
    rec = bridged[case]
    assert rec["parsed"] and rec["built"], (rec["errors"], rec["log"])
    ops = [r["op"] for r in _created(rec)]
    assert {r["op"] for r in _described(rec)} == set(ops)
    for r in _created(rec):  # the parser passes the creator's fields, in the contract's attribute order
        spec = ALL_OPS[r["op"]]
        assert r["fields"] == [a.name for a in spec.attributes if a.name != "plugin_version"]


def test_attributes_reach_the_kernel_as_the_node_wrote_them(bridged):
    """The parser hands strings over with a trailing NUL (tensorrt.plugin keeps it); the kernel still gets
    SILU from 'silu' and not from 'none'. Floats and ints arrive as written."""
    (decode,) = _launches(bridged["conv_decode"])
    (prefill,) = _launches(bridged["conv_prefill"])
    assert decode["attrs"] == {"activation": "silu\0"} and prefill["attrs"] == {"activation": "none\0"}
    assert decode["tactics"]["0"]["constexprs"]["SILU"] is True
    assert prefill["tactics"]["0"]["constexprs"]["SILU"] is False
    (gdn,) = _launches(bridged["gdn_prefill"])
    assert gdn["attrs"] == pytest.approx(GDN_ATTRS) and isinstance(gdn["attrs"]["use_qk_l2norm"], int)
    assert all(t["constexprs"]["scale"] == pytest.approx(0.125) for t in gdn["tactics"].values())


def _by_hand(op, ins):
    """Output shapes derived from the op definitions (docs/model.md), not from the contract's rule."""
    if op == "GatedDeltaRule":
        (B, T, _, Dk), (_, _, Hv, Dv) = ins[0], ins[2]
        return [[B, T, Hv, Dv], [B, Hv, Dk, Dv]]
    if op in ("GatedDeltaPrep", "GatedDeltaOut"):
        (B, T, _, Dk), Hv, Dv = ins[0], ins[2][2 if op == "GatedDeltaPrep" else 1], ins[2][-1]
        NT = -(-T // 64)  # 64-token chunks, the last one padded
        if op == "GatedDeltaOut":
            return [[B, T, Hv, Dv]]
        return [[B, Hv, NT, 64, Dk], [B, Hv, NT, 64, Dv], [B, Hv, NT, 64, 64], [B, Hv, NT, 64]]
    if op == "GatedDeltaStates":
        (B, _, _, Dk), (_, Hv, NT, C, _), Dv = ins[0], ins[1], ins[2][-1]
        return [[B, Hv, NT, Dk, Dv], [B, Hv, NT, C, Dv], [B, Hv, Dk, Dv]]
    assert op == "CausalConv1d"
    return [ins[0], ins[1]]


def test_moe_stage_shapes(bridged):
    """NB = ceil(N*K / block_m) + min(E, N*K) blocks of block_m slots; pair tensors [N, K, ...]."""
    for case in ("moe_pairs", "moe_grouped16", "moe_grouped64"):
        for r in _launches(bridged[case]):
            a, ins, outs = r["attrs"], r["inputs"], r["outputs"]
            if r["op"] == "MoERoute":
                N, K = ins[0][0], a["top_k"]
                assert outs == [[N, K], [N, K]]
            elif r["op"] == "MoEAlign":
                P, E, bm = ins[1][0] * ins[1][1], ins[0][1], a["block_m"]
                nb = -(-P // bm) + min(E, P)
                assert outs == [[nb * bm], [nb]], (case, r)
            elif r["op"] == "MoEGateUp":
                assert outs == [[ins[2][0], ins[1][1] // 2]]
            elif r["op"] == "MoEDown":
                assert outs == [[*ins[4], ins[1][1]]]
            elif r["op"] == "MoEPairGateUp":
                N, K, I = ins[0][0], a["top_k"], ins[2][1] // 2  # noqa: E741
                assert outs == [[N, K, I], [N, K], [N, K]]
            else:
                assert outs == [[ins[2][0], ins[1][1]]]
    for case in ("gdn_prefill", "gdn_decode", "gdn_prep", "gdn_states", "gdn_out", "conv_decode", "conv_prefill"):
        (r,) = _launches(bridged[case])
        assert r["outputs"] == _by_hand(r["op"], r["inputs"])


def test_moe_itself_is_a_jit_plugin_with_the_contract_shape(bridged):
    """deploykit::MoE has no aot_impl (several kernels and scratch): tensorrt.plugin makes it a JIT plugin, whose
    output is [N, H] in the activation dtype, N dynamic."""
    (r,) = _described(bridged["moe_jit"])
    assert r["jit"] and r["op"] == "MoE" and r["attrs"] == {"top_k": 2, "norm_topk_prob": 1}
    assert r["outputs"] == [[None, 32]] and r["types"] == ["BF16"] * 5


def test_autotune_offers_each_activation_dtype_with_the_fixed_types(bridged):
    for rec in bridged.values():
        for r in _launches(rec):
            spec = ALL_OPS[r["op"]]
            kinds = [t.dtype for t in (*spec.inputs, *spec.outputs)]
            fixed = {"float32": "FLOAT", "int32": "INT32"}
            act = {tuple({c[i] for i, k in enumerate(kinds) if k == "T"}) for c in r["offered"]}
            assert act == {("FLOAT",), ("HALF",), ("BF16",)}, r["op"]
            assert all(c[i] == fixed[k] for c in r["offered"] for i, k in enumerate(kinds) if k != "T")
            assert r["types"] in r["offered"]  # the build's own types are among them


@pytest.fixture
def gpu_launch_options(monkeypatch):
    """Launch options as on a GPU (no CPU-interpreter upcast). The launcher modules are imported first: Triton
    decides at `@triton.jit` time whether a kernel is interpreted, and later tests run them on the CPU."""
    from deploykit.plugins.aot import LAUNCHER_MODULES

    for module in LAUNCHER_MODULES:
        importlib.import_module(module)
    monkeypatch.setenv("TRITON_INTERPRET", "0")


# the AOT plugin's dot precision is tf32 (gdn_aot_spec); the launcher takes it as a knob
GDN_TACTICS = {"1": dict(mode="recurrent"), "2": dict(mode="chunk", dot_precision="tf32"),
               "3": dict(mode="chunk", solve="blocked", dot_precision="tf32"),
               "4": dict(mode="chunk", dot_precision="tf32", chunk_size=16, block_v=32, num_warps=4)}



def _stage_kwargs(op: str, tactic: str) -> dict:
    """The launcher keywords of a GDN stage plugin's tactic: tf32 dots too, and the tactic's knobs (solve, the
    state scan's tile: the launcher would pick by B, the plugin for batch 1)."""
    from deploykit.plugins.gated_delta_net.launch import GDN_STAGE_TACTICS

    return dict(dot_precision="tf32", **GDN_STAGE_TACTICS[op][int(tactic) or 1])


def _launcher_call(r, tactic: str) -> dict:
    """What the op's torch launcher launches (one kernel, not run) for the plugin's static input shapes and
    attributes."""
    from deploykit.plugins import launcher
    from deploykit.plugins.aot import recorded_launch

    spec = ALL_OPS[r["op"]]
    types = r["types"][: len(r["inputs"])]  # "types" lists the inputs' then the outputs'
    inputs = [torch.zeros(d, dtype=TORCH[t]) for d, t in zip(r["inputs"], types, strict=True)]
    attrs = [r["attrs"][a.name] for a in spec.attributes if a.name != "plugin_version"]
    attrs = [string_attribute(a) if isinstance(a, str) else a for a in attrs]
    if r["op"] == "GatedDeltaRule":
        kwargs = GDN_TACTICS[tactic]
    else:
        kwargs = _stage_kwargs(r["op"], tactic) if r["op"].startswith("GatedDelta") else {}
    (kernel, grid, args, call_kwargs), _ = recorded_launch(launcher(r["op"]), (*inputs, *attrs), kwargs)
    return {"kernel": kernel.__name__, "grid": list(grid), "args": args, "kwargs": dict(call_kwargs)}


STATIC = ["moe_pairs", "moe_grouped16", "moe_grouped64", "gdn_prefill", "gdn_decode", "gdn_prep", "gdn_states",
          "gdn_out", "conv_decode", "conv_prefill"]


@pytest.mark.parametrize("case", STATIC)
def test_plugins_launch_what_the_launchers_launch(bridged, gpu_launch_options, case):
    """Same kernel, grid, block and scalar arguments as the tested torch launcher; the PTX takes the tensors and
    scalars in TensorRT's AOT order (inputs, extra scalars, outputs) plus Triton's two scratch pointers."""
    for r in _launches(bridged[case]):
        want_tactics = {"GatedDeltaRule": set(GDN_TACTICS), "GatedDeltaPrep": {"1", "2", "3"},
                        "GatedDeltaStates": {"1", "2", "3"}}.get(r["op"], {"0"})
        assert set(r["tactics"]) == want_tactics
        for tactic, got in r["tactics"].items():
            call = _launcher_call(r, tactic)
            scalars = [a for a in call["args"] if isinstance(a, int) and not isinstance(a, bool)]
            abi = [".u32" if isinstance(a, int) else ".u64" for a in call["args"]] + [".u64", ".u64"]
            assert got["kernel"] == call["kernel"], (case, tactic)
            assert got["grid"] == call["grid"], (case, r["op"], tactic)
            assert got["block"] == [32 * call["kwargs"].get("num_warps", 4), 1, 1]
            assert got["extra"] == scalars and got["extra_dtypes"] == ["INT32"] * len(scalars)
            assert got["ptx_params"] == abi, (case, r["op"])
            assert got["entry_in_ptx"] and got["ptx_target"] == "sm_90a"
            launch_options = {k: call["kwargs"].pop(k, None) for k in ("num_warps", "num_stages")}
            assert got["constexprs"] == call["kwargs"], (case, r["op"], tactic)
            assert got["num_warps"] == (launch_options["num_warps"] or 4)


ITEMSIZE = {"FLOAT": 4, "HALF": 2, "BF16": 2, "INT32": 4}


@pytest.mark.parametrize("case", STATIC)
def test_tensors_are_declared_aligned_only_where_every_row_starts_on_16_bytes(bridged, case):
    """The AOT PTX assumes 16-byte alignment (128-bit loads) for a tensor exactly when its bytes per leading
    index are a multiple of 16, so that any offset TensorRT can hand a plugin keeps it (plugins/aot.py)."""
    for r in _launches(bridged[case]):
        dims = r["inputs"] + r["outputs"]
        want = [i for i, (d, t) in enumerate(zip(dims, r["types"], strict=True))
                if math.prod(d[1:]) * ITEMSIZE[t] % 16 == 0]
        for got in r["tactics"].values():
            assert got["aligned"] == want, (case, r["op"], dims)


def test_conv_picks_its_decode_tiles_only_for_one_token(bridged):
    """A static T = 1 takes the decode specialisation (256 channels per program); the launcher agrees."""
    (decode,) = _launches(bridged["conv_decode"])
    (prefill,) = _launches(bridged["conv_prefill"])
    assert decode["tactics"]["0"]["grid"] == [3, 2, 1]  # B = 3, ceil(300 / 256), one token
    assert prefill["tactics"]["0"]["grid"] == [2, 6, 2]  # B = 2, ceil(96 / 16), ceil(100 / 64)


@pytest.mark.parametrize("case", ["moe_dynamic", "gdn_dynamic", "gdn_conditional"])
def test_dynamic_dims_stay_symbolic(bridged, case):
    """Dims that only the runtime knows reach the launch as expressions (None here), model dims as constants."""
    launches = _launches(bridged[case])
    assert launches
    for r in launches:
        for got in r["tactics"].values():
            assert None in got["grid"] + got["extra"], (r["op"], got)
            assert None not in got["block"] and got["shared_mem"] is not None


def test_builder_registers_either_kind_of_plugin_on_datacenter_tensorrt(tmp_path):
    """deploykit.build.registration on one registry with NVIDIA's tensorrt.plugin: "python" holds our IPluginV3
    creators, "aot" tensorrt.plugin's own creators for every op, and switching back and forth leaves exactly
    the asked-for kind (the two kinds carry the same names, so TensorRT would otherwise keep the first)."""
    out = tmp_path / "steps.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, str(BRIDGE), "--registration", str(out)], capture_output=True, text=True,
                         timeout=300, env=env, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    python = {n: f"{n}Creator" for n in PLUGIN_OPS} | {"CausalConv1d": None}  # conv: lowered by the exporter
    aot = {n: "_TemplatePluginCreator" for n in ALL_OPS}
    want = [("python", python), ("aot", aot), ("python", python), ("aot", aot), (None, dict.fromkeys(aot))]
    assert [(s["active"], s["creators"]) for s in result["steps"]] == want
    python_stamps, aot_stamps = result["stamps"]["python"], result["stamps"]["aot"]
    assert [p["name"] for p in aot_stamps] == list(PLUGIN_OPS)
    assert all(a["sha256"] != p["sha256"] for a, p in zip(aot_stamps, python_stamps, strict=True))  # different sources


def test_the_conditional_gdn_lowering_builds_both_branches_as_aot_plugins(bridged):
    """--gdn-stages with prefill and decode profiles: an If whose branches hold the three stage plugins and the
    GatedDeltaRule plugin, every one an AOT kernel (tensorrt.plugin's aot_impl ran for each)."""
    rec = bridged["gdn_conditional"]
    assert sorted(r["op"] for r in _created(rec)) == sorted(["GatedDeltaRule", "GatedDeltaPrep", "GatedDeltaStates",
                                                             "GatedDeltaOut"])
    assert {r["op"] for r in _launches(rec)} == {r["op"] for r in _created(rec)}
