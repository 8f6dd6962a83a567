"""Builder behaviour on hand-written contract graphs: plugin vs body dispatch, errors, targets, manifest."""

from __future__ import annotations

import json
import sys

import pytest
from contract_graphs import OPSET, contract_model

from deploykit.build.builder import BuildOptions, build_engine, parse_onnx
from deploykit.build.inspect import inspect_plan
from deploykit.build.manifest import manifest_path, verify_manifest
from deploykit.build.profiles import default_profiles, input_shapes
from deploykit.errors import DeployKitError

SMALL = default_profiles(max_batch=2, max_tokens=16, max_past=32)


def _types(parsed):
    return [layer.type for layer in parsed.report.layers]


def test_registered_plugin_wins_over_the_body_when_the_node_has_a_namespace(backend, save):
    path = save(contract_model(body=True))
    assert _types(parse_onnx(path, backend, plugins=True)) == ["PLUGIN_V3", "PLUGIN_V3"]
    # unregistered: the parser inlines the stand-in bodies (3 Identity nodes)
    assert _types(parse_onnx(path, backend, plugins=False)) == ["IDENTITY"] * 3


def test_real_reference_bodies_inline_and_build_without_plugins(backend, save):
    """The exporter's Scan / dense MoE bodies go through TensorRT's loop layers, fp16 and bf16."""
    from deploykit.export.functions import attach_functions

    for dtype in ("float16", "bfloat16"):
        path = save(attach_functions(contract_model(dtype, body=False), OPSET), f"{dtype}.onnx")
        result = build_engine(path, options=BuildOptions(profiles=SMALL, plugins=False))
        types = result.manifest.layer_types
        assert "PLUGIN_V3" not in types and types["RECURRENCE"] == 1 and types["TOPK"] == 1
        assert result.manifest.plugins == [] and result.manifest.plugin_layers == 0


def test_wrong_plugin_version_without_body_is_tensorrts_plugin_not_found_in_one_line(backend, save):
    path = save(contract_model(body=False, version="7"))
    with pytest.raises(DeployKitError) as err:
        parse_onnx(path, backend, plugins=True)
    message = str(err.value)
    assert "Plugin not found, are the plugin name, version, and namespace correct?" in message
    assert "gdr_node" in message and "version 7" in message and "\n" not in message


def test_without_namespace_or_body_the_domain_is_the_namespace(backend, save):
    path = save(contract_model(body=False, namespace=None))
    assert _types(parse_onnx(path, backend, plugins=True)) == ["PLUGIN_V3", "PLUGIN_V3"]


def test_wrong_plugin_name_without_body_is_plugin_not_found(backend, save):
    path = save(contract_model(body=False, name="GatedDeltaRuleX"))
    with pytest.raises(DeployKitError, match="GatedDeltaRuleX.*Plugin not found"):
        parse_onnx(path, backend, plugins=True)


def test_silently_inlined_body_is_caught_when_plugins_were_asked_for(backend, save):
    """TensorRT quietly uses the body when (name, version, namespace) matches no plugin; the builder does not."""
    for kwargs in ({"version": "2"}, {"namespace": "other"}, {"namespace": ""}, {"namespace": None}):
        path = save(contract_model(body=True, **kwargs))
        with pytest.raises(DeployKitError, match="2 of 2 deploykit nodes were built from their reference bodies"):
            parse_onnx(path, backend, plugins=True)


def test_build_for_sm89_and_sm120_stamps_and_verifies(backend, save):
    path = save(contract_model())
    result = build_engine(path, options=BuildOptions(targets=["sm89", "sm_120"], profiles=SMALL))
    m = result.manifest
    assert result.engine_path.name == "model.sm89-sm120.engine" and result.engine_path.is_file()
    assert m.targets == ["sm89", "sm120"] and m.tensorrt_flavour == "tensorrt-rtx"
    assert m.tensorrt_version == backend.trt.__version__ == "1.7.1.116"
    assert [p.name for p in m.plugins] == ["GatedDeltaRule", "MoE"] and m.plugin_layers == 2
    assert [p.spec.name for p in m.profiles] == ["prefill", "decode"]
    # decode profile: one new token; B and T come from the ONNX dim names batch / tokens
    assert m.profiles[1].shapes["gdr_q"] == [[1, 1, 2, 8], [2, 1, 2, 8], [2, 1, 2, 8]]
    assert m.profiles[0].shapes["moe_hidden"] == [[1, 16], [32, 16], [32, 16]]  # tokens_flat = batch * tokens
    outputs = ("gdr_output", "gdr_final_state", "moe_output")
    plan = inspect_plan(result.engine_path.read_bytes(), ("GatedDeltaRule", "MoE"), outputs)
    assert plan.targets == ["sm120", "sm89"] and plan.profiles == 2
    assert plan.plugin_layers == ["gdr_node", "moe_node"]
    assert [(t.name, t.dtype, t.shape) for t in plan.tensors] == [
        ("gdr_output", "HALF", [-1, -1, 4, 8]), ("gdr_final_state", "FLOAT", [-1, 4, 8, 8]), ("moe_output", "HALF", [-1, 16])]
    assert verify_manifest(result.engine_path).engine.sha256 == m.engine.sha256


def test_manifest_check_catches_a_changed_engine_or_stamp(backend, save, tmp_path):
    path = save(contract_model())
    result = build_engine(path, options=BuildOptions(profiles=SMALL))
    original = manifest_path(result.engine_path).read_text()
    stamp = json.loads(original)
    stamp["targets"] = ["sm120"]
    manifest_path(result.engine_path).write_text(json.dumps(stamp))
    with pytest.raises(DeployKitError, match="targets"):
        verify_manifest(result.engine_path)
    # one dim fewer in the stamp: the dims it keeps all agree, so only the rank can tell them apart
    stamp = json.loads(original)
    out = next(t for t in stamp["outputs"] if t["name"] == "gdr_output")
    out["shape"] = out["shape"][:-1]
    manifest_path(result.engine_path).write_text(json.dumps(stamp))
    with pytest.raises(DeployKitError, match=r"engine tensor gdr_output is HALF\[-1, -1, 4, 8\]"):
        verify_manifest(result.engine_path)
    manifest_path(result.engine_path).write_text(original)
    # an engine built from the same ONNX without plugins, under the first engine's manifest
    other = build_engine(path, tmp_path / "other.engine", BuildOptions(profiles=SMALL, plugins=False))
    manifest_path(other.engine_path).write_text(manifest_path(result.engine_path).read_text())
    with pytest.raises(DeployKitError, match="hash.*plugin layers"):
        verify_manifest(other.engine_path)


def test_unsupported_target_and_unknown_dim_are_user_errors(backend, save):
    path = save(contract_model())
    with pytest.raises(DeployKitError, match="cannot build for sm90"):
        build_engine(path, options=BuildOptions(targets=["sm90"], profiles=SMALL))
    with pytest.raises(DeployKitError, match="dynamic dimension 'seqlen'"):
        input_shapes(SMALL[0], [("x", ("batch", "seqlen"))])
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]


def test_missing_tensorrt_is_one_clear_error(monkeypatch):
    from deploykit.build import trt_backend

    monkeypatch.setattr(trt_backend, "_LOADED", {})
    for module in trt_backend.MODULES.values():
        monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(DeployKitError, match="neither TensorRT nor TensorRT for RTX is installed"):
        trt_backend.load_backend("auto")
    with pytest.raises(DeployKitError, match="pip install 'deploykit\\[tensorrt-rtx\\]'"):
        trt_backend.load_backend("tensorrt-rtx")


def test_only_trt_backend_imports_tensorrt():
    """The flavour differences stay in one module: nothing else in deploykit/ nor the IPluginV3 module imports
    TensorRT (plugins/aot.py, the kernels' datacenter-only QDP/AOT path, keeps its own guard)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"^\s*(import|from)\s+tensorrt(_rtx_bindings|_rtx_libs)?\b", re.MULTILINE)
    files = [*(root / "deploykit").rglob("*.py"), root / "plugins" / "tensorrt_v3.py"]
    offenders = [str(f.relative_to(root)) for f in files if pattern.search(f.read_text()) and f.name != "trt_backend.py"]
    assert offenders == []


def test_known_rtx_failure_inlined_scan_with_batch_pinned_to_one(backend, save):
    """TensorRT for RTX 1.7.1 cannot compile the GDN Scan body when batch is fixed at 1 and tokens vary; the
    error says so and how to avoid it. Batch 1..2 builds. (If a TensorRT update fixes it, update docs/build.md.)"""
    from deploykit.export.functions import attach_functions

    path = save(attach_functions(contract_model(body=False), OPSET))
    with pytest.raises(DeployKitError, match="is_const.*use --max-batch 2 or build with plugins"):
        build_engine(path, options=BuildOptions(profiles=default_profiles(1, 16, 32), plugins=False))
    build_engine(path, options=BuildOptions(profiles=default_profiles(2, 16, 32), plugins=False))
    build_engine(path, options=BuildOptions(profiles=default_profiles(1, 16, 32), plugins=True))
