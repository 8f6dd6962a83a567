"""Catalog: parameter counts per component against ../shared/reference/qwen35.md section 4, aliases, HF config loading."""

import json

import pytest
import yaml

from deploykit.errors import DeployKitError
from deploykit.planner.anatomy import anatomy
from deploykit.planner.models import catalog, resolve_model
from deploykit.resources import profiles_dir

# qwen35.md section 4 (computed there from the configs and cross-checked against transformers on the meta device):
# text (no MTP), MTP, vision, total (+MTP), active text/token (rounded to 0.01B as printed).
QWEN35_MD = {
    "Qwen3.5-0.8B": (752_393_024, 20_452_864, 100_592_896, 873_438_784, 0.752),
    "Qwen3.5-2B": (1_881_825_088, 60_828_160, 331_416_576, 2_274_069_824, 1.88),
    "Qwen3.5-4B": (4_205_751_296, 120_599_552, 333_514_240, 4_659_865_088, 4.21),
    "Qwen3.5-9B": (8_953_803_264, 243_290_624, 456_010_480, 9_653_104_368, 8.95),
    "Qwen3.5-27B": (26_895_998_464, 424_699_392, 460_730_096, 27_781_427_952, 26.90),
    "Qwen3.5-35B-A3B": (34_660_610_688, 844_640_768, 446_571_248, 35_951_822_704, 3.45),
    "Qwen3.5-122B-A10B": (122_111_526_912, 2_523_679_232, 451_290_864, 125_086_497_008, 9.77),
    "Qwen3.5-397B-A17B": (396_346_350_336, 6_595_568_128, 456_010_480, 403_397_928_944, 17.35),
}


def test_catalog_has_the_eight_checkpoints():
    assert sorted(s.name for s in catalog()) == sorted(QWEN35_MD)


@pytest.mark.parametrize("name", list(QWEN35_MD))
def test_params_per_component_equal_qwen35_md(name):
    text, mtp, vision, total, active_b = QWEN35_MD[name]
    a = anatomy(resolve_model(name))
    assert (a.params_text, a.params_mtp, a.params_vision, a.params_total) == (text, mtp, vision, total)
    assert round(a.params_active / 1e9, 2 if active_b >= 1 else 3) == active_b


@pytest.mark.parametrize("spec", catalog(), ids=lambda s: s.name)
def test_total_rounds_to_published_figure(spec):
    # qwen35.md: every computed total is within 0.18 % of the published figure.
    assert abs(anatomy(spec).params_total / spec.published_total_params - 1) < 0.0019


@pytest.mark.parametrize("alias", ["35b-a3b", "qwen3.5-35b-a3b", "Qwen/Qwen3.5-35B-A3B", "QWEN3.5-35B-A3B", "Qwen3.5-35B-A3B"])
def test_aliases_resolve_case_insensitively(alias):
    assert resolve_model(alias).name == "Qwen3.5-35B-A3B"


def test_unknown_model_names_close_matches():
    with pytest.raises(DeployKitError, match="unknown model '13b'.*did you mean"):
        resolve_model("13b")


def test_every_config_field_has_a_source():
    for path in sorted((profiles_dir() / "models").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        cfg, sources = doc["config"], doc["sources"]
        leaves = [k for k in cfg if k not in ("text_config", "vision_config")]
        leaves += [f"{sec}.{k}" for sec in ("text_config", "vision_config") for k in cfg[sec]]
        missing = [k for k in leaves if not sources.get(k)]
        assert not missing, f"{path.name}: fields without a source: {missing}"
        cited = {c for s in sources.values() for c in __import__("re").findall(r"S\d+", s)}
        assert cited <= set(doc["source_legend"]), f"{path.name}: cited sources missing from the legend"


def _catalog_config(name: str) -> dict:
    path = next(p for p in (profiles_dir() / "models").glob("*.yaml") if yaml.safe_load(p.read_text())["name"] == name)
    return yaml.safe_load(path.read_text())["config"]


def test_local_config_json_and_checkpoint_dir(tmp_path):
    # A fine-tune folder with the 35B-A3B config.json: same counts as the catalog entry.
    ckpt = tmp_path / "my-finetune"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps(_catalog_config("Qwen3.5-35B-A3B")))
    for arg in (str(ckpt), str(ckpt / "config.json")):
        spec = resolve_model(arg)
        assert anatomy(spec).params_total == QWEN35_MD["Qwen3.5-35B-A3B"][3]
        assert spec.name == "my-finetune"


def test_local_config_without_layer_types_uses_interval(tmp_path):
    cfg = _catalog_config("Qwen3.5-9B")
    del cfg["text_config"]["layer_types"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    a = anatomy(resolve_model(str(tmp_path / "config.json")))
    assert (a.n_full, a.n_linear) == (8, 24)  # qwen35.md: 9B has 32 layers, 24 linear / 8 full
    assert a.params_text == QWEN35_MD["Qwen3.5-9B"][0]


def test_other_architecture_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 4096}))
    with pytest.raises(DeployKitError, match="not a Qwen3.5 architecture"):
        resolve_model(str(tmp_path))


def test_config_missing_field_is_one_line_error(tmp_path):
    cfg = _catalog_config("Qwen3.5-9B")
    del cfg["text_config"]["hidden_size"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DeployKitError, match="hidden_size"):
        resolve_model(str(tmp_path))
