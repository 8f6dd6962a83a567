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
