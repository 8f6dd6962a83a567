"""`deploykit validate` as a gate (it passes, and it fails on a perturbed model) and interrupted exports."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import onnx

from deploykit.cli import main


def test_validate_cli_passes_and_writes_report(exported, tmp_path):
    report = tmp_path / "report.json"
    assert main(["validate", str(exported("dense")), "--decode-steps", "4", "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["passed"] and data["graph_optimization"] == "ORT_ENABLE_BASIC" and len(data["steps"]) == 6


def test_validate_cli_runs_the_schedule_it_is_given(exported, tmp_path, capsys):
    """A 70-token prompt (more than one 64-token GDN chunk), no second chunk, one decode step; a bad count is
    one line, exit 2, and no report."""
    report = tmp_path / "report.json"
    args = ["validate", str(exported("dense")), "--prefill-tokens", "70", "--chunk-tokens", "0"]
    assert main([*args, "--decode-steps", "1", "--report", str(report)]) == 0
    steps = json.loads(report.read_text())["steps"]
    assert [(s["kind"], s["tokens"], s["past"]) for s in steps] == [("prefill", 70, 0), ("decode", 1, 70)]
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    assert main(["validate", str(exported("dense")), "--prefill-tokens", "0", "--report", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --prefill-tokens must be >= 1, got 0 (pass --prefill-tokens 1 or more)"]
    assert not bad.exists()


def test_validate_fails_on_perturbed_model(exported, tmp_path, capsys):
    """Scaling one weight by 1.05 in the data file must trip the gate: exit 1 and a failure list."""
    out = tmp_path / "perturbed"
    shutil.copytree(exported("dense"), out)
    model = onnx.load(str(out / "model.onnx"), load_external_data=False)
    init = next(t for t in model.graph.initializer if t.name.endswith("layers.3.mlp.down_proj.weight"))
    meta = {e.key: e.value for e in init.external_data}
    offset, length = int(meta["offset"]), int(meta["length"])
    with open(out / "model.onnx.data", "r+b") as f:
        f.seek(offset)
        w = np.frombuffer(f.read(length), dtype=np.float32) * np.float32(1.05)
        f.seek(offset)
        f.write(w.tobytes())
    report = tmp_path / "bad.json"
    assert main(["validate", str(out), "--decode-steps", "2", "--report", str(report)]) == 1
    data = json.loads(report.read_text())
    assert not data["passed"] and data["failures"]
    assert "FAILED" in capsys.readouterr().out


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a checkpoint directory nor a catalog model" in err[0]
    assert not (tmp_path / "out").exists()


def test_interrupted_export_leaves_no_manifest(tiny_checkpoint, tmp_path):
    """SIGKILL while tracing/writing: the output directory never gets a deploykit.json."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploykit", "export", str(tiny_checkpoint("dense")), "-o", str(out), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".out.tmp-*")):
        time.sleep(0.05)
    assert list(tmp_path.glob(".out.tmp-*")), "the export never started writing"
    time.sleep(0.3)
    assert proc.poll() is None, "the export finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "deploykit.json").exists()


def test_random_weights_layers_export_validates_against_deploykit(tiny_checkpoint, tmp_path):
    """--random-weights --layers: weights regenerated from (seed, name) by the reference match the export."""
    from deploykit.export.manifest import Manifest

    out = tmp_path / "rand"
    assert (
        main(
            [
                "export",
                str(tiny_checkpoint("moe")),
                "-o",
                str(out),
                "--random-weights",
                "--seed",
                "3",
                "--layers",
                "3",
                "-q",
            ]
        )
        == 0
    )
    m = Manifest.read(out)
    assert m.random_weights and m.seed == 3 and m.layers == 3 and m.checkpoint_files == []
    assert [t.name for t in m.inputs if t.name.startswith("past.")] == [
        "past.0.conv",
        "past.0.recurrent",
        "past.1.key",
        "past.1.value",
        "past.2.conv",
        "past.2.recurrent",
    ]
    assert main(["validate", str(out), "--reference", "deploykit", "--decode-steps", "3"]) == 0
    assert main(["validate", str(out)]) == 2  # transformers has no such weights: a clear one-line error


def test_validate_against_deploykit_reference_from_checkpoint(exported):
    """--reference deploykit loads the checkpoint with deploykit's own loader and model."""
    from deploykit.validate import validate_export

    report = validate_export(exported("moe"), reference="deploykit", prompts=2, decode_steps=2)
    assert report.reference == "deploykit" and report.passed, report.failures


def _fp8_copy(src, dst):
    """The tiny checkpoint with one projection stored as float8_e4m3fn plus its block scale, as Qwen's FP8
    checkpoints are (weight_scale_inv)."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    for f in dst.glob("*.safetensors"):
        tensors = load_file(f)
        key = next((k for k in tensors if k.endswith("mlp.down_proj.weight")), None)
        if key:
            tensors[key] = tensors[key].to(torch.float8_e4m3fn)
            tensors[key.replace(".weight", ".weight_scale_inv")] = torch.ones(1, 1)
            save_file(tensors, f)
            return key
    raise AssertionError("no down_proj in the tiny checkpoint")


def test_quantized_checkpoints_are_refused(tiny_checkpoint, tmp_path, capsys):
    """An FP8 checkpoint read as plain numbers would export (and validate) wrong weights: refused up front."""
    from deploykit.errors import DeployKitError
    from deploykit.model.loader import load_model

    ckpt = tmp_path / "fp8"
    key = _fp8_copy(tiny_checkpoint("dense"), ckpt)
    capsys.readouterr()
    assert main(["export", str(ckpt), "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"tensor {key}" in err and "quantized" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    try:
        load_model(ckpt)
        raise AssertionError("the loader read an FP8 checkpoint")
    except DeployKitError as exc:
        assert "quantized" in str(exc)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "fp8", "weight_block_size": [128, 128]}
    (ckpt / "config.json").write_text(json.dumps(cfg))
    assert main(["export", str(ckpt), "-o", str(tmp_path / "out"), "-q"]) == 2
    assert "quant_method 'fp8'" in capsys.readouterr().err


def test_damaged_inputs_are_one_line_errors(tiny_checkpoint, exported, tmp_path, capsys):
    bad_json = tmp_path / "badjson"
    shutil.copytree(tiny_checkpoint("dense"), bad_json)
    (bad_json / "config.json").write_text("{not json")
    truncated = tmp_path / "truncated"
    shutil.copytree(tiny_checkpoint("dense"), truncated)
    shard = next(truncated.glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:1000])
    bad_manifest = tmp_path / "badmanifest"
    shutil.copytree(exported("dense"), bad_manifest)
    (bad_manifest / "deploykit.json").write_text("{}")
    no_model = tmp_path / "nomodel"
    shutil.copytree(exported("dense"), no_model)
    (no_model / "model.onnx").unlink()
    bf16 = tmp_path / "bf16"  # the manifest is what validate reads the dtype from
    shutil.copytree(exported("dense"), bf16)
    man = json.loads((bf16 / "deploykit.json").read_text())
    (bf16 / "deploykit.json").write_text(json.dumps({**man, "dtype": "bfloat16"}))
    capsys.readouterr()
    cases = [
        (["export", str(bad_json), "-o", str(tmp_path / "o1")], "is not valid JSON"),
        (["export", str(truncated), "-o", str(tmp_path / "o2")], "corrupt safetensors shard"),
        (["validate", str(bad_manifest)], "is not a valid deploykit export manifest"),
        (["validate", str(no_model)], "model.onnx, which is missing"),
        (["validate", str(bf16)], "validating a bf16 export is not supported yet"),
        (["validate", str(exported("dense")), "--report", str(tmp_path / "nodir" / "r.json")], "does not exist"),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, (args, err)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_export_into_dot_and_never_over_other_files(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """`-o .` names the current folder; replacing an export that has engines beside it is refused."""
    out = tmp_path / "here"
    out.mkdir()
    monkeypatch.chdir(out)
    tiny_checkpoint("dense")
    capsys.readouterr()
    assert main(["export", str(tiny_checkpoint("dense")), "-o", ".", "--layers", "2", "-q"]) == 0
    assert (out / "deploykit.json").is_file()
    (out / "model.sm89.engine").write_bytes(b"engine")
    assert main(["export", str(tiny_checkpoint("dense")), "-o", ".", "--layers", "2", "-q"]) == 2
    assert "model.sm89.engine" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["deploykit.json", "model.onnx", "model.onnx.data",
                                                     "model.sm89.engine"]
    (out / "model.sm89.engine").unlink()
    assert main(["export", str(tiny_checkpoint("dense")), "-o", ".", "--layers", "1", "-q"]) == 0
    assert os.getcwd() == str(out)  # the folder itself was kept: the shell's current folder still exists
    assert json.loads((out / "deploykit.json").read_text())["layers"] == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp folders left
