"""`deploykit build` end to end through the CLI entry point (exit codes, one-line errors, files written)."""

from __future__ import annotations

import json

from contract_graphs import contract_model

from deploykit.cli import main


def test_build_command_writes_engine_and_manifest(backend, save, capsys):
    path = save(contract_model())
    code = main(["build", str(path.parent), "--target", "sm89", "--max-batch", "2", "--max-tokens", "8",
                 "--max-past", "16"])
    out = capsys.readouterr().out
    assert code == 0, out
    engine = path.parent / "model.sm89.engine"
    stamp = json.loads((path.parent / "model.sm89.engine.json").read_text())
    assert engine.stat().st_size == stamp["engine"]["bytes"] and stamp["targets"] == ["sm89"]
    assert stamp["profiles"][0]["spec"]["tokens"] == {"min": 1, "opt": 8, "max": 8}
    assert "deploykit::GatedDeltaRule/1, deploykit::MoE/1 (2 layers)" in out


def test_build_command_without_plugins_inlines(backend, save, capsys):
    path = save(contract_model())
    assert main(["build", str(path), "--no-plugins"]) == 0
    assert "plugins  none (0 layers)" in capsys.readouterr().out
    assert (path.parent / "model.sm89.inlined.engine").is_file()


def test_build_command_errors_are_one_line_exit_2(backend, save, capsys):
    path = save(contract_model(body=False, version="3"))
    assert main(["build", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: TensorRT could not parse model.onnx at node 'gdr_node' (GatedDeltaRule): "
                          "Plugin not found") and "\n" not in err
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]
    assert main(["build", str(path.parent / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_unnamed_dynamic_dim_needs_dim_option(backend, save, capsys):
    path = save(contract_model(dims={"T": "s53"}))  # a torch-generated dim name
    assert main(["build", str(path)]) == 2
    assert "dynamic dimension 's53'" in capsys.readouterr().err
    assert main(["build", str(path), "--dim", "s53=tokens", "--max-tokens", "4"]) == 0
    stamp = json.loads((path.parent / "model.sm89.engine.json").read_text())
    assert stamp["profiles"][0]["shapes"]["gdr_q"][2] == [1, 4, 2, 8]  # batch max 1, tokens max 4


def test_files_that_are_not_onnx_and_bad_levels_are_one_line_errors(backend, tmp_path, save, capsys):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a protobuf\xff" * 10)
    path = save(contract_model())
    for args, message in [(["build", str(garbage)], "garbage.onnx is not an ONNX model"),
                          (["build", str(path), "--opt-level", "9"], "optimization level 9 is out of range")]:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not list(path.parent.glob("*.engine*"))


def test_aot_plugins_refusals_are_one_line_errors(backend, save, capsys):
    """--aot-plugins: TensorRT for RTX has no tensorrt.plugin; MoE needs its stage ops; plugins must be on.
    Nothing is written."""
    path = save(contract_model())  # GatedDeltaRule + MoE
    cases = [(["--aot-plugins"], "MoE's own plugin runs its kernels from Python", "add --moe-stages"),
             (["--aot-plugins", "--moe-stages"], "TensorRT for RTX has no tensorrt.plugin", "--backend tensorrt"),
             (["--aot-plugins", "--no-plugins"], "--aot-plugins asks for plugins", "drop --no-plugins")]
    for extra, message, fix in cases:
        assert main(["build", str(path), "--max-tokens", "8", *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and fix in err and err.count("\n") == 1, err
        assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]
    assert main(["build", str(path), "--max-tokens", "8"]) == 0  # the IPluginV3 creators are back in place
    stamp = json.loads((path.parent / "model.sm89.engine.json").read_text())
    assert stamp["plugin_kind"] == "python" and stamp["plugin_layers"] == 2


def test_dims_the_kernels_refuse_are_one_line_errors(backend, save, capsys):
    """Fixed dims that break a contract requirement are refused before TensorRT parses the graph, with the op,
    the requirement, its values and why, with and without the lowering flags; nothing is written."""
    cases = [({"Hv": 3}, [], "GatedDeltaRule: needs Hv % Hk == 0, got Hv=3, Hk=2"),
             ({"Hv": 3}, ["--gdn-stages"], "GatedDeltaRule: needs Hv % Hk == 0, got Hv=3, Hk=2"),
             ({"I": 5}, ["--moe-stages"], "MoE: needs I2 == 2 * I, got I2=12, I=5")]
    for dims, extra, message in cases:
        path = save(contract_model(dims=dims))
        assert main(["build", str(path), "--max-tokens", "8", *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error: model.onnx cannot be built: " + message), err
        assert "break the op contract" in err and err.count("\n") == 1, err
        assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]
