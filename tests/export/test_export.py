"""Tiny dense and MoE checkpoints (written by transformers) exported to ONNX, checked against transformers."""

from __future__ import annotations

import hashlib
import json

import onnx
import pytest

from deploykit.export.manifest import Manifest, config_hash
from deploykit.export.readiness import check_readiness
from deploykit.export.schemas import onnx_attributes, register_schemas
from deploykit.ops.contract import DOMAIN, ONNX_OPS

FORMS = [("dense", False), ("moe", False), ("dense", True), ("moe", True)]
FP32_REL = 1e-4  # acceptance: max |dlogits| <= 1e-4 x max |logits|


def _load(out):
    return onnx.load(str(out / "model.onnx"), load_external_data=False)


@pytest.mark.parametrize("kind,decompose", FORMS, ids=[f"{k}{'-std' if d else ''}" for k, d in FORMS])
def test_matches_transformers(exported, kind, decompose):
    """Batch 3 (export traced 2): prefill 7, a second chunk of 5, then 16 greedy T=1 steps vs transformers."""
    from deploykit.validate import validate_export

    report = validate_export(exported(kind, decompose), reference="hf", prompts=3, decode_steps=16)
    kinds = [s.kind for s in report.steps]
    assert kinds == ["prefill", "chunk"] + ["decode"] * 16
    assert report.batch == 3
    assert report.passed, report.failures
    assert report.worst_rel_err <= FP32_REL
    assert all(s.top1_agreement == 1.0 for s in report.steps)
    assert all(s.max_rel_err <= FP32_REL for s in report.final_states)


@pytest.mark.parametrize("kind,decompose", FORMS, ids=[f"{k}{'-std' if d else ''}" for k, d in FORMS])
def test_checker_and_readiness(exported, kind, decompose):
    register_schemas()
    out = exported(kind, decompose)
    onnx.checker.check_model(str(out / "model.onnx"), full_check=True)
    model = _load(out)
    count, findings = check_readiness(model)
    assert count > 100 and findings == []
    domains = {n.domain for n in model.graph.node}
    if decompose:
        assert domains <= {"", "ai.onnx"} and not model.functions
        assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}
    else:
        assert DOMAIN in domains
        assert {(f.domain, f.name) for f in model.functions} == {
            (DOMAIN, n.op_type) for n in model.graph.node if n.domain == DOMAIN
        }


@pytest.mark.parametrize("kind", ["dense", "moe"])
def test_custom_nodes_follow_the_contract(exported, kind):
    model = _load(exported(kind))
    nodes = [n for n in model.graph.node if n.domain == DOMAIN]
    names = {n.op_type for n in nodes}
    assert names == ({"GatedDeltaRule", "MoE"} if kind == "moe" else {"GatedDeltaRule"})
    for node in nodes:
        spec = ONNX_OPS[node.op_type]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert set(attrs) == {a.name for a in onnx_attributes(spec)}  # every attribute written explicitly
        assert (
            attrs["plugin_version"] == spec.plugin_version.encode()
            and attrs["plugin_namespace"] == b"deploykit"
        )
        assert len(node.input) == len(spec.inputs) and len(node.output) == len(spec.outputs)


def test_graph_io_names_and_manifest(exported, tiny_checkpoint):
    from deploykit.model.config import load_config
    from deploykit.model.model import Qwen35

    out = exported("moe")
    cfg = load_config(tiny_checkpoint("moe"))
    model = Qwen35(cfg, device="meta")
    onnx_model = _load(out)
    assert [i.name for i in onnx_model.graph.input] == [
        "input_ids",
        "position_ids",
        "attention_mask",
        *model.state_names("past"),
    ]
    assert [o.name for o in onnx_model.graph.output] == ["logits", *model.state_names("present")]
    m = Manifest.read(out)
    raw = json.loads((tiny_checkpoint("moe") / "config.json").read_text())
    assert m.config == raw and m.config_hash == config_hash(raw)
    files = sorted(tiny_checkpoint("moe").glob("*.safetensors"))
    assert [(f.name, f.sha256) for f in m.checkpoint_files] == [
        (p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files
    ]
    assert m.dtype == "float32" and m.opset == 20 and m.domains == {DOMAIN: 1}
    assert {o.name: o.nodes for o in m.ops} == {"GatedDeltaRule": 2, "MoE": 4}
    shapes = {t.name: t.shape for t in m.inputs}
    assert shapes["past.1.key"] == ["batch", cfg.num_key_value_heads, "past", cfg.head_dim]
    assert shapes["past.0.recurrent"] == [
        "batch",
        cfg.linear_num_value_heads,
        cfg.linear_key_head_dim,
        cfg.linear_value_head_dim,
    ]
    assert {t.name: t.dtype for t in m.inputs}["past.0.recurrent"] == "float32"
    assert m.readiness.not_ready == []


def test_in_memory_model_export_matches_eager(tiny_checkpoint, tmp_path):
    """export_onnx(Qwen35 instance): ORT equals the eager model over a prefill and a T=1 step at batch 1."""
    import numpy as np
    import torch

    from deploykit.export import export_onnx
    from deploykit.model.config import load_config
    from deploykit.model.loader import random_model
    from deploykit.validate.ort_runner import OrtModel, make_session

    model = random_model(load_config(tiny_checkpoint("dense")), dtype=torch.float32, seed=5)
    result = export_onnx(model, tmp_path / "mem", progress=False)
    assert result.manifest.checkpoint_dir is None and result.tensors_written > 0
    ort_model = OrtModel(
        make_session(result.model_path),
        [t for t in result.manifest.inputs if t.name.startswith("past.")],
        "float32",
    )
    ids = torch.randint(0, model.config.vocab_size, (1, 6), generator=torch.Generator().manual_seed(0))
    state, past = model.empty_state(1, torch.float32), 0
    for chunk in (ids[:, :5], ids[:, 5:]):
        t = chunk.shape[1]
        with torch.no_grad():
            ref, state = model(
                chunk, (past + torch.arange(t))[None], torch.ones(1, past + t, dtype=torch.int64), state
            )
        got = ort_model.step(chunk.numpy())
        assert np.abs(got - ref.numpy()).max() <= FP32_REL * np.abs(ref.numpy()).max()
        past += t


def test_fp16_export_within_fp16_thresholds(exported):
    """fp16 weights/activations (fp32 recurrent state) vs fp32 transformers: within the fp16 bounds."""
    from deploykit.validate import validate_export
    from deploykit.validate.thresholds import THRESHOLDS

    out = exported("moe", dtype="fp16")
    model = _load(out)
    recurrent = next(i for i in model.graph.input if i.name == "past.0.recurrent")
    assert recurrent.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert (
        next(o for o in model.graph.output if o.name == "logits").type.tensor_type.elem_type
        == onnx.TensorProto.FLOAT16
    )
    report = validate_export(out, prompts=2, decode_steps=4)
    assert report.dtype == "float16" and report.thresholds == THRESHOLDS["float16"]
    assert report.passed, report.failures
    assert 0 < report.worst_rel_err <= THRESHOLDS["float16"].max_rel_err
