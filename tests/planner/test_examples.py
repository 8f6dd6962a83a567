"""The shipped examples run."""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_mixed_fleet_py(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["mixed_fleet.py"])
    runpy.run_path(str(ROOT / "examples" / "mixed_fleet.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "recommendation:" in out and "jetson_agx_thor_t5000" in out and "l40s" in out


def test_mixed_fleet_sh():
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", str(ROOT / "examples" / "mixed_fleet.sh")], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "recommendation:" in proc.stdout and "total_per_gpu" in proc.stdout and "entries fit" in proc.stdout


@pytest.mark.parametrize("doc", ["docs/planner.md", "README.md"])
def test_docs_json_example_validates_against_the_schema(doc):
    import json
    import re

    from deploykit.planner.schema import Plan

    text = (ROOT / doc).read_text()
    block = re.search(r"```jsonc\n(.*?)```", text, re.DOTALL)[1]
    plan = Plan.model_validate(json.loads(re.sub(r"\s*//[^\n]*", "", block)))
    assert plan.entries and plan.entries[0].layout is not None
