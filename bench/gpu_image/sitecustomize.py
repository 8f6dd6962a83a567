"""Makes this interpreter import only what the GPU call will find: the GPU image's distributions
(packages.txt) and the wheels it carries (../wheels.txt). With this folder on PYTHONPATH, importing any other
installed distribution fails as it would there (ModuleNotFoundError), so a dependency the image lacks breaks
the CPU smoke run in CI (tests/kernels/test_bench_harness.py), not the rare GPU call. The standard library
and modules on sys.path that no installed distribution owns (the checkout itself) are not affected."""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _norm(name: str) -> str:  # PEP 503 normalisation: PyYAML, pyyaml and py_yaml are one distribution
    return re.sub(r"[-_.]+", "-", name).lower()


def _listed(path: Path) -> set[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {_norm(re.split(r"[=<>!~ \[]", line)[0]) for line in lines if line}


# GPU_IMAGE_WITHOUT=a,b: take names out again (a test shows that a missing dependency stops the call early)
WITHOUT = {_norm(n) for n in os.environ.get("GPU_IMAGE_WITHOUT", "").split(",") if n}
ALLOWED = (_listed(HERE / "packages.txt") | _listed(HERE.parent / "wheels.txt") | {"deploykit"}) - WITHOUT
OWNERS = importlib.metadata.packages_distributions()  # top-level import name -> distributions that ship it


class OutsideImage:
    """A meta-path finder that refuses top-level modules whose every owner lies outside ALLOWED."""

    def find_spec(self, name, path=None, target=None):
        owners = OWNERS.get(name) if path is None else None
        if owners and not any(_norm(d) in ALLOWED for d in owners):
            raise ModuleNotFoundError(
                f"No module named {name!r} on the GPU image ({', '.join(owners)} is neither in "
                "bench/gpu_image/packages.txt nor carried by bench/wheels.txt)",
                name=name,
            )
        # otherwise None (implicitly): the next finders look it up as usual


sys.meta_path.insert(0, OutsideImage())
