"""The real CLI entry (`deploykit.cli.main`) and a subprocess: errors, JSON schema, files, no torch."""

import json
import subprocess
import sys

import pytest
import yaml

from deploykit.cli import main
from deploykit.planner.schema import Plan
from deploykit.resources import profiles_dir

ENTRY_KEYS = {"model", "precision", "fits", "reason", "layout", "memory_gib", "max_batch", "context", "throughput", "notes"}
LAYOUT_KEYS = {"tp", "ep", "pp", "dp", "gpu", "gpus"}
MEMORY_KEYS = {"weights", "kv_cache", "linear_state", "activations", "overhead", "total_per_gpu", "capacity_per_gpu"}
THROUGHPUT_KEYS = {"decode_tok_s_b1", "decode_tok_s_max", "prefill_tok_s", "ttft_ms"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["plan", "--gpus", "4xFOO"], "unknown GPU 'FOO' (closest: "),
        (["plan", "--gpus", "0xH100"], "GPU count must be at least 1"),
        (["plan", "--gpus", "4xA100", "--context", "-5"], "--context must be a positive"),
        (["plan", "--gpus", "4xA100", "--model", "13b"], "unknown model '13b'"),
        (["plan", "--gpus", "4xA100", "--precision", "fp4"], "unknown precision 'fp4'"),
        (["plan", "--gpus", "4xA100", "--batch", "0"], "--batch must be at least 1"),
        (["plan", "--gpus", "4xA100", "--format", "xml"], "unknown --format 'xml'"),
        (["plan", "--gpus", "4xA100", "--kv-dtype", "int8"], "unknown --kv-dtype"),
        (["plan", "--gpus", "4xA100", "-o", "."], "is a folder"),
        (["plan", "--gpus", "99999999999999999999xH100"], "is over 100,000"),
        (["plan", "--gpus", "orin-nano", "--os-reserve-gib", "100"], "leaves nothing of the"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, capsys):
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_subprocess_error_and_no_partial_file(tmp_path):
    target = tmp_path / "plan.json"
    proc = subprocess.run([sys.executable, "-m", "deploykit", "plan", "--gpus", "4xFOO", "-o", str(target)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "unknown GPU 'FOO'" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_plan_runs_without_torch_and_prints_the_table():
    code = (
        "import sys; from deploykit.cli import main; rc = main(['plan', '--gpus', '4xA100']); "
        "assert rc == 0, rc; heavy = [m for m in ('torch', 'transformers', 'onnx', 'tensorrt') if m in sys.modules]; "
        "assert not heavy, heavy; print('NO-TORCH-OK')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "NO-TORCH-OK" in proc.stdout and "Qwen3.5-397B-A17B" in proc.stdout and "recommendation:" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-2].startswith("recommendation:")  # last before NO-TORCH-OK


def test_json_output_validates_against_the_schema(capsys):
    assert main(["plan", "--gpus", "2xH100-80GB,1xL40S,1xorin", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    plan = Plan.model_validate(doc)
    assert len(plan.entries) == 8 * 3
    for e in doc["entries"]:
        assert set(e) == ENTRY_KEYS
        if e["layout"]:
            assert LAYOUT_KEYS <= set(e["layout"])
        if e["memory_gib"]:
            assert set(e["memory_gib"]) == MEMORY_KEYS
        if e["throughput"]:
            assert set(e["throughput"]) == THROUGHPUT_KEYS
        assert e["fits"] == (e["reason"] is None)


def test_yaml_to_file_and_explain(tmp_path, capsys):
    target = tmp_path / "plan.yaml"
    assert main(["plan", "--gpus", "8xH200", "-m", "397b", "-p", "fp8", "-f", "yaml", "-o", str(target)]) == 0
    plan = Plan.model_validate(yaml.safe_load(target.read_text()))
    assert plan.entries[0].fits and sorted(p.name for p in tmp_path.iterdir()) == ["plan.yaml"]
    capsys.readouterr()
    assert main(["plan", "--gpus", "8xH200", "-m", "397b", "--explain", "397b-a17b"]) == 0
    out = capsys.readouterr().out
    for term in ("weights", "kv_cache", "linear_state", "activations", "overhead", "total_per_gpu"):
        assert term in out


def test_models_json_lists_params_and_checkpoint_bytes(capsys):
    assert main(["models", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 8
    by_name = {r["name"]: r for r in rows}
    r = by_name["Qwen3.5-27B"]
    assert set(r["params"]) == {"text", "mtp", "vision", "total", "active"}
    assert set(r["checkpoint_bytes"]) == {"bf16", "fp8", "int4"}
    assert r["checkpoint_bytes"]["bf16"] == 2 * 27_781_427_952  # qwen35.md total x 2 bytes
    assert "27b" in r["aliases"]


def test_gpus_command_lists_every_profile(capsys):
    assert main(["gpus", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 30
    a100 = next(r for r in rows if r["id"] == "a100_sxm4_80gb")
    assert a100["fp8_supported"] is False and a100["int4_supported"] is True
    assert main(["gpus"]) == 0 and "H200" in capsys.readouterr().out


def test_help_shows_examples(capsys):
    assert main(["plan", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--gpus" in out and "4xA100" in out and "Examples" in out


def test_explain_a_local_checkpoint_by_its_name(tmp_path, capsys, monkeypatch):
    cfg = yaml.safe_load((profiles_dir() / "models" / "qwen3.5-9b.yaml").read_text())["config"]
    (tmp_path / "my-finetune").mkdir()
    (tmp_path / "my-finetune" / "config.json").write_text(json.dumps(cfg))
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "--gpus", "4xA100", "--model", "./my-finetune/config.json", "--explain", "my-finetune"]) == 0
    out = capsys.readouterr().out
    assert "my-finetune bf16 on A100 80GB SXM4" in out and "total_per_gpu" in out


@pytest.mark.parametrize("args", [["plan", "--gpus", "1xH100", "--batch", "abc"], ["plan"], ["plan", "--gpus", "1xH100", "--bogus"]])
def test_usage_errors_exit_2_without_traceback(args, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "see 'deploykit plan --help'" in err


@pytest.mark.parametrize("text_config, message", [
    ({"num_key_value_heads": 0}, "'num_key_value_heads': Input should be greater than 0"),
    ({"layer_types": ["linear_attention"] * 3}, "layer_types has 3 entries for num_hidden_layers 32"),
    ({"head_dim": -256}, "'head_dim': Input should be greater than 0"),
    ({"linear_num_key_heads": 5}, "is not a multiple of linear_num_key_heads 5"),
])
def test_implausible_local_configs_are_one_line_errors(tmp_path, capsys, text_config, message):
    import copy
    import json

    from deploykit.planner.models import resolve_model

    base = resolve_model("9b")
    cfg = {"model_type": "qwen3_5", "text_config": {**copy.deepcopy(base.text.model_dump()), **text_config}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert main(["plan", "--gpus", "1xH100", "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_choices_ignore_case_and_repeated_models_plan_once(capsys):
    assert main(["plan", "--gpus", "1xH100", "-m", "9b", "-m", "9B", "-p", "BF16", "--kv-dtype", "FP8", "-f", "JSON"]) == 0
    import json

    plan = json.loads(capsys.readouterr().out)
    assert [(e["model"], e["precision"]) for e in plan["entries"]] == [("Qwen3.5-9B", "bf16")]
    assert plan["request"]["kv_dtype"] == "fp8"
