"""The GPU benchmark call, `bash bench/run_gpu.sh quick`, end to end on the CPU with SMOKE=1: the same steps
and files, tiny shapes, the Triton interpreter, one call per timing, GPU-only baselines skipped. A GPU call is
short and rare (15 minutes a task, when a task gets one at all), so a bug in the harness must show up here,
not there. The timings are meaningless; the rows, the checks against the naive references and the report
(bench/kernel_ratios.py) are real."""

import json
import os
import subprocess
import sys
from pathlib import Path

from .test_gdn import SCRATCH16_ULPS

ROOT = Path(__file__).resolve().parents[2]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]  # every line must be a JSON row


def _smoke_quick_call(out: Path, timeout: int, **env) -> subprocess.CompletedProcess:
    """`SMOKE=1 bash bench/run_gpu.sh quick` in the GPU call's environment, as far as the CPU can have it: this
    interpreter first on PATH (the script runs `python3`), and only the image's packages plus the carried
    wheels importable (bench/gpu_image/)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    pythonpath = os.pathsep.join(
        filter(None, [str(ROOT / "bench" / "gpu_image"), os.environ.get("PYTHONPATH")])
    )
    env = dict(os.environ, PATH=path, PYTHONPATH=pythonpath, SMOKE="1", OUT=str(out), **env)
    cmd = ["bash", str(ROOT / "bench" / "run_gpu.sh"), "quick"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_quick_gpu_call_runs_checks_and_reports_on_the_cpu(tmp_path):
    proc = _smoke_quick_call(tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cut at" not in proc.stdout, proc.stdout[-3000:]  # every step of ours finished
    assert "precompile: 3 jobs" in proc.stdout and "FAILED" not in proc.stdout, proc.stdout[-3000:]
    out = tmp_path / "bench"
    gdn = _rows(out / "gdn_decode.jsonl") + _rows(out / "gdn_prefill.jsonl")
    moe = _rows(out / "moe.jsonl")
    assert all("error" not in r for r in gdn + moe), [r for r in gdn + moe if "error" in r]

    checked = [r for r in gdn if "state_rel_err" in r]
    modes = {r.get("mode") for r in checked if r["kernel"] == "chunk"}
    assert {"chunk", "split", "split3"} <= modes  # every prefill path is timed and checked
    assert (
        len({r.get("block_v") for r in checked if r["kernel"] == "recurrent"}) >= 3
    )  # the decode tile choices
    assert any(r.get("scratch16") for r in checked)  # split3 with 16-bit scratch too
    for r in checked:  # the interpreter's dots are exact fp32 whatever dot_precision says
        assert r["state_rel_err"] <= 1e-5, r
        if r.get("scratch16"):  # one more 16-bit rounding: held to the output scale (test_gdn.py)
            assert r["out_err_scale_ulps"] <= SCRATCH16_ULPS, r
        else:
            assert r["out_err_bf16_ulps"] <= 1.0, r

    runs = [r for r in moe if "max_err_over_max_ref" in r]
    assert {r["path"] for r in runs} == {"grouped", "pairs"}
    assert all(r["max_err_over_max_ref"] <= 4 * 2.0**-7 for r in runs), runs

    aot = [r for r in _rows(out / "aot.jsonl") if "aot" in r]  # every AOT case ran and matched its launcher
    assert aot and all(r.get("match") for r in aot), aot
    assert {r["kernel"] for r in aot} >= {"gdn_recurrent_kernel", "gdn_chunk_kernel", "moe_token_down_kernel"}

    report = (out / "ratios.txt").read_text()
    assert "MISMATCH" not in report and "FAILED TO RUN" not in report
    assert report.count("MATCH gdn_") == 6  # the AOT section: 3 GatedDeltaRule forms, the 3 stages
    assert f"MoE correctness on this run's device: {len(runs)} of {len(runs)} runs" in report
    assert "[target >= 70 %:" in report  # the issue-5 target line is printed for the 35B-A3B rows


def test_a_dependency_the_gpu_image_lacks_stops_the_call_at_once(tmp_path):
    """What would have cost a whole GPU call: the image has no pydantic, which the op contract needs. Without the
    carried wheel the preflight names the missing module and the fix, exit 2, before any step runs."""
    proc = _smoke_quick_call(tmp_path, timeout=300, GPU_IMAGE_WITHOUT="pydantic")
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-2000:])
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert (
        len(error) == 1 and "No module named 'pydantic'" in error[0] and "bench/fetch_wheels.sh" in error[0]
    )
    assert not list((tmp_path / "bench").glob("*.jsonl"))  # no step ran
