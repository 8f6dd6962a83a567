"""Streaming weights: block-wise external-data writing with dtype conversion, and checkpoint readers."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from onnx import numpy_helper

from deploykit.export import weights as W
from deploykit.export.source import CheckpointReaders


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_writer_blocks_and_converts(tmp_path, monkeypatch, dtype):
    """Tiny blocks (3 rows) force several writes per tensor; values equal torch's own conversion."""
    import onnx_ir as ir

    monkeypatch.setattr(W, "BLOCK_BYTES", 3 * 5 * 4)
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "a": torch.randn(10, 5, generator=gen),
        "b": torch.randn(7, generator=gen),
        "c": torch.tensor(2.5),
    }
    writer = W.ExternalDataWriter(tmp_path)
    values = []
    for name, t in tensors.items():
        ext = writer.write(name, W.reader_from_tensor(t), dtype)
        assert ext.offset % W.ALIGN == 0
        values.append(ir.Value(name=name, const_value=ext))
    writer.close()
    graph = ir.Graph([], [], nodes=[], initializers=values, opset_imports={"": 20})
    onnx.save(ir.serde.serialize_model(ir.Model(graph, ir_version=10)), tmp_path / "m.onnx")
    model = onnx.load(str(tmp_path / "m.onnx"))  # loads the external data
    for init in model.graph.initializer:
        got = torch.from_numpy(numpy_helper.to_array(init).astype("float32"))
        assert torch.equal(got, tensors[init.name].to(dtype).float())


def test_checkpoint_readers_agree_across_layouts(tiny_checkpoint):
    """Per-expert causal_lm layout vs fused multimodal layout of the same weights: identical tensors."""
    from deploykit.model.config import load_config
    from deploykit.model.model import Qwen35

    plain, fused = tiny_checkpoint("moe"), tiny_checkpoint("moe_multimodal_fused")
    cfg = load_config(plain)
    a = CheckpointReaders(sorted(plain.glob("*.safetensors")), cfg.tie_word_embeddings)
    b = CheckpointReaders(sorted(fused.glob("*.safetensors")), cfg.tie_word_embeddings)
    names = dict(Qwen35(cfg, device="meta").named_parameters())
    assert any(n.endswith("experts.gate_up_proj") for n in names)
    for name, p in names.items():
        ra, rb = a.reader(name, tuple(p.shape), p.dtype), b.reader(name, tuple(p.shape), p.dtype)
        n = p.shape[0] if p.dim() else 1
        assert torch.equal(ra.read(0, n), rb.read(0, n)), name


def test_alias_resolves_weights_from_hf_cache(tmp_path, monkeypatch):
    """A catalog alias without --weights finds the newest HF-cache snapshot; without one, a fixable error."""
    from deploykit.errors import DeployKitError
    from deploykit.export.source import resolve_source

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(DeployKitError, match="no weights found"):
        resolve_source("qwen3.5-2b", None, random_weights=False)
    snap = tmp_path / "models--Qwen--Qwen3.5-2B" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    from deploykit.export.source import _catalog_entry

    own = _catalog_entry("qwen3.5-2b")["config"]
    own["text_config"]["rms_norm_eps"] = 1e-5  # a fine-tune's own value: the checkpoint's config.json wins
    (snap / "config.json").write_text(json.dumps(own))
    (snap / "model.safetensors").write_bytes(b"")
    src = resolve_source("qwen3.5-2b", None, random_weights=False)
    assert src.checkpoint_dir == snap and src.config["text_config"]["hidden_size"] == 2048
    assert src.config["text_config"]["rms_norm_eps"] == 1e-5 != _catalog_entry("qwen3.5-2b")["config"]["text_config"]["rms_norm_eps"]
    assert resolve_source("Qwen3.5-2B", None, random_weights=True).checkpoint_dir is None
