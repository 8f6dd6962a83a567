"""Parameter counts and quantised bytes against transformers' own classes built on the meta device.

MTP is not in transformers (`_keys_to_ignore_on_load_unexpected = [r"^mtp.*"]`), so these compare text + vision.
The byte check classifies transformers' named parameters by name, independently of deploykit's anatomy tables.
"""

import math

import pytest
import yaml

from deploykit.planner.anatomy import anatomy
from deploykit.planner.models import resolve_model
from deploykit.resources import profiles_dir

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

FILES = sorted(p for p in (profiles_dir() / "models").glob("*.yaml"))


def _meta_model(doc: dict):
    cfg = dict(doc["config"])
    cls_cfg = transformers.Qwen3_5MoeConfig if cfg["model_type"] == "qwen3_5_moe" else transformers.Qwen3_5Config
    cls_model = (transformers.Qwen3_5MoeForConditionalGeneration if cfg["model_type"] == "qwen3_5_moe"
                 else transformers.Qwen3_5ForConditionalGeneration)
    cfg.pop("model_type")
    config = cls_cfg(**cfg)
    with torch.device("meta"):
        return cls_model(config)


@pytest.fixture(scope="module", params=FILES, ids=lambda p: p.stem)
def built(request):
    doc = yaml.safe_load(request.param.read_text())
    return doc["name"], _meta_model(doc)


def test_text_plus_vision_equals_named_parameters(built):
    name, model = built
    a = anatomy(resolve_model(name))
    hf_total = sum(p.numel() for _, p in model.named_parameters())
    hf_vision = sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    assert hf_total == a.params_text + a.params_vision
    assert hf_vision == a.params_vision


def _hf_bytes(model, precision: str) -> float:
    """Bytes per the issue's rules, from transformers' parameter names and shapes."""
    total = 0.0
    for n, p in model.named_parameters():
        shape = tuple(p.shape)
        is_text_linear = (".visual." not in f".{n}" and "embed_tokens" not in n and "lm_head" not in n
                          and (n.endswith("weight") or ".experts." in n) and len(shape) >= 2 and "conv1d" not in n)
        if precision == "bf16" or not is_text_linear:
            total += p.numel() * 2
            continue
        mats = shape[0] if len(shape) == 3 else 1  # fused experts [E, out, in]: one matrix per expert
        out, inn = shape[-2], shape[-1]
        if "gate_up_proj" in n:  # fused gate and up: two [mi, h] matrices per expert
            mats, out = mats * 2, out // 2
        gate = n.endswith("mlp.gate.weight") or "shared_expert_gate" in n or "in_proj_a" in n or "in_proj_b" in n
        if precision == "fp8":
            total += mats * (out * inn + math.ceil(out / 128) * math.ceil(inn / 128) * 4)
        elif gate:
            total += p.numel() * 2
        else:
            total += mats * (out * inn / 2 + out * math.ceil(inn / 128) * 2.5)
    return total


@pytest.mark.parametrize("precision", ["bf16", "fp8", "int4"])
def test_checkpoint_bytes_equal_name_based_count(built, precision):
    name, model = built
    a = anatomy(resolve_model(name))
    assert a.weight_bytes(precision, mtp=False, vision=True) == pytest.approx(_hf_bytes(model, precision), rel=1e-12)
