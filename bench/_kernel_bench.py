"""Shared helpers of bench_gdn.py / bench_moe.py (GPU only): import shim, timers, copy-bandwidth ceiling.

The repo travels to the GPU machine as a plain working tree; if `pip install -e .` was not possible there,
`import_plugins()` maps plugins/ to `deploykit.plugins` itself (what setup.py does for an installed wheel)."""

from __future__ import annotations

import importlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# --smoke: tiny shapes on the device BENCH_DEVICE names (cpu, with TRITON_INTERPRET=1), so a test can run the
# whole harness where there is no GPU; its timings are one wall-clock call each and mean nothing.
SMOKE = "--smoke" in sys.argv
DEV = os.environ.get("BENCH_DEVICE", "cuda")


def import_plugins():
    try:
        return importlib.import_module("deploykit.plugins")
    except ImportError:
        sys.path.insert(0, ROOT)
        import deploykit

        spec = importlib.util.spec_from_file_location(
            "deploykit.plugins",
            os.path.join(ROOT, "plugins", "__init__.py"),
            submodule_search_locations=[os.path.join(ROOT, "plugins")],
        )
        mod = importlib.util.module_from_spec(spec)
        sys.modules["deploykit.plugins"] = mod
        spec.loader.exec_module(mod)
        deploykit.plugins = mod
        return mod


def timings(fn, n_lat: int = 30, n_thr: int = 50, graph: bool = True) -> dict:
    """latency = median of events around one call (synchronised each time, includes Python launch cost);
    throughput = n calls back to back / n (shared/reference/h100-baseline.md's two definitions);
    graph = one call captured in a CUDA graph, replayed n times / n (what a TensorRT engine approaches)."""
    import torch

    if DEV != "cuda":  # smoke run: exercise the call, report a wall-clock figure
        import time

        t0 = time.perf_counter()
        fn()
        ms = round((time.perf_counter() - t0) * 1e3, 4)
        return {"latency_ms_median": ms, "throughput_ms": ms}
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(True), torch.cuda.Event(True)
    lat = []
    for _ in range(n_lat):
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()  # noqa: E702
        lat.append(a.elapsed_time(b))
    lat.sort()
    a.record()
    for _ in range(n_thr):
        fn()
    b.record()
    torch.cuda.synchronize()  # noqa: E702
    r = {
        "latency_ms_median": round(lat[len(lat) // 2], 4),
        "throughput_ms": round(a.elapsed_time(b) / n_thr, 4),
    }
    if graph:
        try:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                fn()
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                fn()
            g.replay()
            torch.cuda.synchronize()  # noqa: E702
            a.record()
            for _ in range(n_thr):
                g.replay()
            b.record()
            torch.cuda.synchronize()  # noqa: E702
            r["graph_ms"] = round(a.elapsed_time(b) / n_thr, 4)
        except Exception as exc:  # a capture failure must not hide the other timings
            r["graph_error"] = repr(exc)[:120]
    return r


def copy_bandwidth_GBps(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy, bytes read + written per second (the baseline's 3.02 TB/s ceiling, re-measured)."""
    import torch

    if DEV != "cuda":
        import time

        x = torch.empty(1 << 24, dtype=torch.uint8)
        t0 = time.perf_counter()
        x.clone()
        return round(2 * x.numel() / (time.perf_counter() - t0) / 1e9, 1)
    x = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    y.copy_(x)
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(True), torch.cuda.Event(True)
    a.record()
    for _ in range(20):
        y.copy_(x)
    b.record()
    torch.cuda.synchronize()  # noqa: E702
    return round(2 * nbytes * 20 / (a.elapsed_time(b) / 1e3) / 1e9, 1)


def device_line() -> dict:
    import torch
    import triton

    versions = {"torch": torch.__version__, "triton": triton.__version__}
    if DEV != "cuda":
        return {"device": f"{DEV} (smoke run: timings are meaningless)", **versions}
    p = torch.cuda.get_device_properties(0)
    return {"device": p.name, "sm": f"{p.major}{p.minor}", **versions}


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)
