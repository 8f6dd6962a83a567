"""Config parsing: both config.json layouts, layer kinds from layer_types, full-size shapes vs transformers."""

import pytest
import torch
import transformers as tf

from deploykit.errors import DeployKitError
from deploykit.model.config import parse_config
from deploykit.model.model import Qwen35


@pytest.mark.parametrize("cfg_cls,lm_cls", [(tf.Qwen3_5TextConfig, tf.Qwen3_5ForCausalLM),
                                            (tf.Qwen3_5MoeTextConfig, tf.Qwen3_5MoeForCausalLM)])
def test_full_size_parameter_shapes_equal_transformers(cfg_cls, lm_cls):
    """transformers' default configs are the 9B dense and 35B-A3B MoE text dims: compare every shape on meta."""
    hf_cfg = cfg_cls()
    with torch.device("meta"):
        hf = lm_cls(hf_cfg)
    ours = Qwen35(parse_config(hf_cfg.to_dict()), device="meta")
    ref = {k.removeprefix("model."): tuple(v.shape) for k, v in hf.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert got == ref


def test_nested_text_config_and_wrapper_tie_flag():
    text = tf.Qwen3_5TextConfig(num_hidden_layers=4, tie_word_embeddings=False).to_dict()
    cfg = parse_config({"model_type": "qwen3_5", "text_config": text, "tie_word_embeddings": True})
    assert cfg.tie_word_embeddings and not cfg.is_moe
    assert cfg.layer_types == ("linear_attention",) * 3 + ("full_attention",)
    assert cfg.rotary_dim == 64 and cfg.conv_dim == 2 * 16 * 128 + 32 * 128


def test_layer_types_are_read_not_guessed():
    raw = tf.Qwen3_5TextConfig(num_hidden_layers=3, layer_types=["full_attention", "linear_attention",
                                                                 "full_attention"]).to_dict()
    assert parse_config(raw).full_attention_layers == [0, 2]
    del raw["layer_types"]
    with pytest.raises(DeployKitError, match="layer_types"):
        parse_config(raw)
    raw["full_attention_interval"] = 3  # explicit interval: transformers' own rule
    assert parse_config(raw).full_attention_layers == [2]


@pytest.mark.parametrize("raw,needle", [
    ({"model_type": "llama"}, "model_type"),
    ({**tf.Qwen3_5TextConfig().to_dict(), "attention_bias": True}, "attention_bias"),
    ({**tf.Qwen3_5TextConfig().to_dict(), "num_hidden_layers": 5}, "layer_types"),
])
def test_bad_configs_are_one_line_errors(raw, needle):
    with pytest.raises(DeployKitError) as e:
        parse_config(raw)
    assert needle in str(e.value) and "\n" not in str(e.value)
