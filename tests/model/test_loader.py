"""Loader: real HF layouts, tied/untied heads, skipped tensors, dtype/device, and one-line errors."""

import json
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from deploykit.errors import DeployKitError
from deploykit.model.loader import load_model, random_model, random_tensor
from deploykit.model.testing import load_hf_model


def hf_params(kind, path):
    """transformers' own parameters for the checkpoint, renamed to ours (drop `model.`, fuse experts)."""
    hf = load_hf_model(kind, path)
    return {k.removeprefix("model."): v for k, v in hf.state_dict().items()}


def copy_ckpt(src, dst):
    shutil.copytree(src, dst)
    return dst


def one_line_error(exc_info, *needles):
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


@pytest.mark.parametrize("name,kind", [("dense", "dense"), ("dense_tied", "dense"), ("moe", "moe"),
                                       ("moe_tied", "moe")])
def test_loaded_parameters_equal_transformers(tiny_checkpoint, name, kind):
    ours = load_model(tiny_checkpoint(name), dtype=torch.float32)
    ref = hf_params(kind, tiny_checkpoint(name))
    got = ours.state_dict()
    assert set(got) == set(ref)
    for k, v in ref.items():
        assert torch.equal(got[k], v), k
    if ours.config.tie_word_embeddings:
        assert ours.lm_head.weight.data_ptr() == ours.embed_tokens.weight.data_ptr()
    else:
        assert not torch.equal(ours.lm_head.weight, ours.embed_tokens.weight)


@pytest.mark.parametrize("plain,other", [("dense", "dense_multimodal"), ("moe", "moe_multimodal_fused")])
def test_multimodal_prefix_and_fused_experts_load_the_same_weights(tiny_checkpoint, plain, other, caplog):
    """model.language_model.* + visual/mtp + fused experts, sharded with an index == the per-expert HF layout."""
    a = load_model(tiny_checkpoint(plain), dtype=torch.float32).state_dict()
    with caplog.at_level(logging.WARNING, logger="deploykit.model.loader"):
        b = load_model(tiny_checkpoint(other), dtype=torch.float32).state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert "vision tower" in caplog.text and "MTP head" in caplog.text


def test_loads_straight_to_bf16(tiny_checkpoint):
    model = load_model(tiny_checkpoint("moe"), dtype=torch.bfloat16)
    ref = hf_params("moe", tiny_checkpoint("moe"))
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert torch.equal(model.layers[0].mlp.experts.gate_up_proj, ref["layers.0.mlp.experts.gate_up_proj"].bfloat16())


def test_missing_tensor_names_it(tiny_checkpoint, tmp_path):
    ckpt = copy_ckpt(tiny_checkpoint("dense"), tmp_path / "c")
    tensors = load_file(ckpt / "model.safetensors")
    del tensors["model.layers.1.self_attn.k_proj.weight"]
    save_file(tensors, ckpt / "model.safetensors")
    with pytest.raises(DeployKitError) as e:
        load_model(ckpt)
    one_line_error(e, "missing tensor", "model.layers.1.self_attn.k_proj.weight")


def test_missing_expert_part_names_the_fused_tensor(tiny_checkpoint, tmp_path):
    ckpt = copy_ckpt(tiny_checkpoint("moe"), tmp_path / "c")
    tensors = load_file(ckpt / "model.safetensors")
    del tensors["model.layers.2.mlp.experts.4.up_proj.weight"]
    save_file(tensors, ckpt / "model.safetensors")
    with pytest.raises(DeployKitError) as e:
        load_model(ckpt)
    one_line_error(e, "missing tensor", "layers.2.mlp.experts.gate_up_proj")


def test_untied_checkpoint_without_lm_head_is_an_error(tiny_checkpoint, tmp_path):
    ckpt = copy_ckpt(tiny_checkpoint("dense"), tmp_path / "c")
    tensors = load_file(ckpt / "model.safetensors")
    del tensors["lm_head.weight"]
    save_file(tensors, ckpt / "model.safetensors")
    with pytest.raises(DeployKitError) as e:
        load_model(ckpt)
    one_line_error(e, "lm_head.weight")


def test_shape_mismatch_names_the_first_tensor(tiny_checkpoint, tmp_path):
    ckpt = copy_ckpt(tiny_checkpoint("dense"), tmp_path / "c")
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["intermediate_size"] = 100  # weights say 96
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DeployKitError) as e:
        load_model(ckpt)
    one_line_error(e, "shape mismatch", "model.layers.0.mlp.down_proj.weight", "[64, 96]", "[64, 100]")


def test_shape_mismatch_in_a_fused_expert_tensor(tiny_checkpoint, tmp_path):
    ckpt = copy_ckpt(tiny_checkpoint("moe_multimodal_fused"), tmp_path / "c")
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["text_config"]["moe_intermediate_size"] = 16
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DeployKitError) as e:
        load_model(ckpt)
    one_line_error(e, "shape mismatch", "model.language_model.layers.0.mlp.experts.down_proj")


@pytest.mark.parametrize("damage", ["truncate", "header"])
def test_corrupt_shard_is_one_line_error(tiny_checkpoint, tmp_path, damage):
    ckpt = copy_ckpt(tiny_checkpoint("dense_tied"), tmp_path / "c")  # sharded: damage one shard
    shard = sorted(ckpt.glob("*.safetensors"))[1]
    data = shard.read_bytes()
    if damage == "truncate":
        shard.write_bytes(data[:-100])
        needles = ("corrupt", shard.name, "past the end")
    else:
        shard.write_bytes(data[:8] + b"{not json" + data[17:])
        needles = ("corrupt", shard.name, "JSON")
    with pytest.raises(DeployKitError) as e:
        load_model(ckpt)
    msg = one_line_error(e, *needles)
    if damage == "truncate":  # names the tensor that runs off the end
        assert "tensor " in msg


def test_missing_shard_from_index(tiny_checkpoint, tmp_path):
    ckpt = copy_ckpt(tiny_checkpoint("dense_tied"), tmp_path / "c")
    victim = min(ckpt.glob("*.safetensors"))
    victim.unlink()
    with pytest.raises(DeployKitError) as e:
        load_model(ckpt)
    one_line_error(e, victim.name, "missing")


def test_pickle_checkpoints_are_refused(tmp_path, tiny_checkpoint):
    d = tmp_path / "pickled"
    d.mkdir()
    shutil.copy(tiny_checkpoint("dense") / "config.json", d)
    torch.save({"x": torch.zeros(1)}, d / "pytorch_model.bin")
    with pytest.raises(DeployKitError) as e:
        load_model(d)
    one_line_error(e, "pytorch_model.bin", "pickle")
    with pytest.raises(DeployKitError) as e:
        load_model(d / "pytorch_model.bin")
    one_line_error(e, "pickle")


def test_unexpected_tensor_is_reported(tiny_checkpoint, tmp_path):
    ckpt = copy_ckpt(tiny_checkpoint("dense"), tmp_path / "c")
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["num_hidden_layers"] = 4
    cfg["layer_types"] = cfg["layer_types"][:4]
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DeployKitError) as e:
        load_model(ckpt)
    one_line_error(e, "unexpected tensor", "model.layers.4.")


def test_random_weights_are_deterministic_per_tensor(tiny_checkpoint):
    from deploykit.model.config import load_config

    cfg = load_config(tiny_checkpoint("moe"))
    a = random_model(cfg, dtype=torch.float32, seed=3)
    b = random_model(cfg, dtype=torch.float32, seed=3)
    c = random_model(cfg, dtype=torch.float32, seed=4)
    name = "layers.1.mlp.experts.gate_up_proj"
    p = dict(a.named_parameters())[name]
    assert torch.equal(p, dict(b.named_parameters())[name])
    assert not torch.equal(p, dict(c.named_parameters())[name])
    assert torch.equal(random_tensor(name, p.shape, torch.float32, seed=3), p)  # regenerate one tensor alone
    assert torch.equal(random_tensor(name, p.shape, torch.bfloat16, seed=3), p.bfloat16())
    A = -a.layers[0].linear_attn.A_log.exp()
    assert (A <= -1).all() and (A >= -16).all()  # decay rates in the documented range
    logits, _ = a(torch.zeros(1, 4, dtype=torch.long), torch.arange(4)[None], torch.ones(1, 4, dtype=torch.long),
                  a.empty_state(1))
    assert torch.isfinite(logits).all()


def test_meta_device_uses_no_memory(tiny_checkpoint):
    model = random_model(tiny_checkpoint("dense"), dtype=torch.bfloat16, device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert model.state_shapes(1, 0)[0] == (1, 2 * 2 * 16 + 6 * 8, 3)
