"""Exporter -> TensorRT for RTX, end to end on the tiny checkpoints: real engines built on the CPU.

Engines built here: tiny dense and tiny MoE, fp16, each with plugins and with inlined reference bodies,
each for sm_89 + sm_120 in one engine (4), plus tiny dense bf16 with plugins (5). Expected layer counts,
tensor shapes and dtypes come from the tiny configs (deploykit.model.testing), not from the builder.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from deploykit.build.builder import BuildOptions, build_engine, parse_onnx
from deploykit.build.inspect import inspect_plan
from deploykit.build.manifest import verify_manifest
from deploykit.build.profiles import default_profiles
from deploykit.errors import DeployKitError

TARGETS = ["sm89", "sm120"]
PROFILES = default_profiles(max_batch=2, max_tokens=16, max_past=64)
TRT_DTYPE = {"float16": "HALF", "bfloat16": "BF16"}
FAST = 0  # builder_optimization_level 0: same parser, layers and checks, ~30% less build time on CI's 2 cores


def _expected(kind: str) -> dict:
    """Counts and shapes from the tiny config: one GatedDeltaRule per linear-attention layer, one MoE per
    layer of the MoE model; recurrent state [B, Hv, Dk, Dv] fp32, KV cache [B, Hkv, P, head_dim]."""
    from deploykit.model.testing import TINY_DENSE, TINY_MOE

    c = TINY_DENSE if kind == "dense" else TINY_MOE
    n_lin = sum(t == "linear_attention" for t in c["layer_types"])
    full = c["layer_types"].index("full_attention")
    return {
        "GatedDeltaRule": n_lin, "MoE": c["num_hidden_layers"] if kind == "moe" else 0,
        "past.0.recurrent": [-1, c["linear_num_value_heads"], c["linear_key_head_dim"], c["linear_value_head_dim"]],
        f"past.{full}.key": [-1, c["num_key_value_heads"], -1, c["head_dim"]],
    }


@pytest.fixture(scope="module")
def exports(tiny_checkpoint, tmp_path_factory):
    """export(kind, dtype) -> model.onnx path, each exported once per module."""
    pytest.importorskip("tensorrt_rtx_bindings")
    from deploykit.export import export_onnx

    root = tmp_path_factory.mktemp("exports")
    cache = {}

    def get(kind: str, dtype: str):
        if (kind, dtype) not in cache:
            out = export_onnx(tiny_checkpoint(kind), root / f"{kind}-{dtype}", dtype=dtype, progress=False)
            cache[kind, dtype] = out.model_path
        return cache[kind, dtype]

    return get


def _check_engine(result, kind: str, dtype: str, plugins: bool) -> None:
    want = _expected(kind)
    m = result.manifest
    n_plugins = want["GatedDeltaRule"] + want["MoE"]
    assert m.targets == TARGETS and m.tensorrt_flavour == "tensorrt-rtx"
    assert m.plugin_layers == (n_plugins if plugins else 0)
    assert m.layer_types.get("PLUGIN_V3", 0) == m.plugin_layers
    assert sorted(p.name for p in m.plugins) == (sorted(k for k in ("GatedDeltaRule", "MoE") if want[k]) if plugins else [])
    if not plugins:  # the GDN body's Scan becomes one TensorRT loop per linear-attention layer
        assert m.layer_types["RECURRENCE"] == want["GatedDeltaRule"]
    onnx_file = result.engine_path.parent / "model.onnx"
    assert (m.onnx.sha256, m.onnx.file) == (hashlib.sha256(onnx_file.read_bytes()).hexdigest(), "model.onnx")
    data = onnx_file.with_name("model.onnx.data")  # the weights: the stamp must tell two checkpoints apart
    assert [(d.file, d.sha256) for d in m.onnx_data] == [(data.name, hashlib.sha256(data.read_bytes()).hexdigest())]
    assert m.optimization_level == FAST
    umask = os.umask(0)
    os.umask(umask)
    for f in (result.engine_path, result.manifest_path):  # readable by a server running as another user
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask
    # profiles: attention_mask is [batch, past + tokens]; prefill past 0..64 (opt 0), tokens 1..16 (opt 16);
    # decode one token, past opt = 64 // 2
    assert m.profiles[0].shapes["attention_mask"] == [[1, 1], [2, 16], [2, 80]]
    assert m.profiles[1].shapes["attention_mask"] == [[1, 1], [2, 33], [2, 65]]
    # the built engine itself: targets, one graph per profile, plugin layers, I/O dtypes and static dims
    names = ("input_ids", "past.0.recurrent", next(k for k in want if k.endswith(".key")), "present.0.recurrent")
    plan = inspect_plan(result.engine_path.read_bytes(), ("GatedDeltaRule", "MoE"), names)
    assert plan.targets == sorted(TARGETS) and plan.profiles == 2
    assert len(plan.plugin_layers) == m.plugin_layers
    found = {t.name: t for t in plan.tensors}
    assert found["input_ids"].dtype == "INT64" and found["input_ids"].shape == [-1, -1]
    assert found["past.0.recurrent"].dtype == "FLOAT" and found["past.0.recurrent"].shape == want["past.0.recurrent"]
    key = names[2]
    assert found[key].dtype == TRT_DTYPE[dtype] and found[key].shape == want[key]
    assert verify_manifest(result.engine_path) == m


@pytest.mark.parametrize("kind", ["dense", "moe"])
def test_tiny_fp16_builds_with_plugins_and_with_inlined_bodies(exports, kind):
    onnx_path = exports(kind, "float16")
    for plugins in (True, False):
        options = BuildOptions(targets=TARGETS, profiles=PROFILES, plugins=plugins, optimization_level=FAST)
        result = build_engine(onnx_path, options=options)
        _check_engine(result, kind, "float16", plugins)


def test_tiny_dense_bf16_builds_with_plugins(exports):
    options = BuildOptions(targets=TARGETS, profiles=PROFILES, optimization_level=FAST)
    result = build_engine(exports("dense", "bfloat16"), options=options)
    _check_engine(result, "dense", "bfloat16", True)


def test_exported_node_with_a_wrong_plugin_version_is_plugin_not_found(exports):
    """The exported dense model with its bodies stripped and plugin_version changed on every GDN node."""
    import onnx

    src = exports("dense", "float16")
    model = onnx.load(str(src), load_external_data=False)
    del model.functions[:]
    for node in model.graph.node:
        if node.op_type == "GatedDeltaRule":
            next(a for a in node.attribute if a.name == "plugin_version").s = b"9"
    bad = src.with_name("wrong_version.onnx")  # beside model.onnx.data, which it still references
    onnx.save(model, str(bad))
    with pytest.raises(DeployKitError) as err:
        parse_onnx(bad, "tensorrt-rtx", plugins=True)
    assert "Plugin not found, are the plugin name, version, and namespace correct?" in str(err.value)
    assert "asks for version 9" in str(err.value) and "\n" not in str(err.value)


def _build_through_cli(onnx_path, flag: str, max_tokens: int, engine, capsys) -> str:
    """`deploykit build` with a lowering flag, 2 sequences of up to `max_tokens` and a decode profile, for sm89;
    returns what it printed (exit 0 asserted)."""
    from deploykit.cli import main

    code = main(["build", str(onnx_path), flag, "--target", "sm89", "--max-batch", "2", "--max-tokens",
                 str(max_tokens), "--max-past", "64", "--opt-level", str(FAST), "--output", str(engine)])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def test_tiny_moe_builds_with_moe_stages_through_the_cli(exports, capsys):
    """`deploykit build --moe-stages` on the exported tiny MoE model: every layer's MoE node becomes an If
    between the pairs sequence (decode, up to 4 tokens) and the grouped one (prefill up to 2 x 16 tokens), the
    engine's I/O stays the export's, and the lowered copy parsed beside model.onnx (which references
    model.onnx.data) is gone afterwards."""
    onnx_path = exports("moe", "float16")
    before = sorted(p.name for p in onnx_path.parent.iterdir())
    engine = onnx_path.parent / "stages.engine"
    out = _build_through_cli(onnx_path, "--moe-stages", 16, engine, capsys)
    assert "moe      lowered to its stage plugins: conditional (pairs for N <= 4, else grouped (block_m=64))" in out
    m = verify_manifest(engine)
    n_moe, n_gdn = _expected("moe")["MoE"], _expected("moe")["GatedDeltaRule"]
    assert sorted(p.name for p in m.plugins) == ["GatedDeltaRule", "MoEAlign", "MoEDown", "MoEGateUp",
                                                 "MoEPairDown", "MoEPairGateUp", "MoERoute"]
    assert m.plugin_layers == n_gdn + 6 * n_moe and m.layer_types["CONDITION"] == n_moe
    plain = build_engine(onnx_path, options=BuildOptions(targets=["sm89"], profiles=PROFILES, optimization_level=FAST))
    assert [(t.name, t.shape, t.dtype) for t in m.outputs] == [(t.name, t.shape, t.dtype) for t in plain.manifest.outputs]
    assert [(t.name, t.shape, t.dtype) for t in m.inputs] == [(t.name, t.shape, t.dtype) for t in plain.manifest.inputs]
    after = sorted(p.name for p in onnx_path.parent.iterdir())
    assert set(after) - set(before) == {engine.name, engine.name + ".json", plain.engine_path.name,
                                        plain.manifest_path.name}


def test_tiny_dense_builds_with_gdn_stages_through_the_cli(exports, capsys):
    """`deploykit build --gdn-stages` on the exported tiny dense model with prefill (1-128 tokens) and decode
    profiles: every linear-attention layer's GatedDeltaRule node sits in an If beside its three stage plugins
    (the head dims and dtype come from shape inference on the exported graph), and the engine's I/O stays the
    export's."""
    onnx_path = exports("dense", "float16")
    engine = onnx_path.parent / "gdn_stages.engine"
    out = _build_through_cli(onnx_path, "--gdn-stages", 128, engine, capsys)
    assert "gdn      lowered to its stage plugins: conditional (stages for T >= 64, else the node)" in out
    m = verify_manifest(engine)
    n_gdn = _expected("dense")["GatedDeltaRule"]
    assert sorted(p.name for p in m.plugins) == ["GatedDeltaOut", "GatedDeltaPrep", "GatedDeltaRule",
                                                 "GatedDeltaStates"]
    assert m.plugin_layers == 4 * n_gdn and m.layer_types["CONDITION"] == n_gdn
    plain = build_engine(onnx_path, options=BuildOptions(targets=["sm89"], profiles=PROFILES, optimization_level=FAST))
    assert [(t.name, t.dtype) for t in m.outputs] == [(t.name, t.dtype) for t in plain.manifest.outputs]
    assert [(t.name, t.dtype) for t in m.inputs] == [(t.name, t.dtype) for t in plain.manifest.inputs]
