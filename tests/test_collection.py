"""Every test file is collected: pytest silently skips folders that match `norecursedirs` (its default list
has `build`, `dist`, `venv`, ...), which once hid the whole engine-builder suite from CI."""

import importlib.util
from fnmatch import fnmatch
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_no_test_folder_matches_norecursedirs(pytestconfig):
    patterns = pytestconfig.getini("norecursedirs")
    folders = {p.parent for p in TESTS.rglob("test_*.py")} - {TESTS}
    hidden = sorted(str(f.relative_to(TESTS)) for f in folders for part in f.relative_to(TESTS).parts
                    if any(fnmatch(part, pat) for pat in patterns))
    assert folders and not hidden, f"pytest would never collect {hidden} (norecursedirs {patterns})"


def test_no_test_folder_shadows_an_installed_module():
    """A test folder that is a top-level package on sys.path hides the installed module of its name: with
    transformers 5.25, `import kernels` (Hugging Face's, which transformers imports) found tests/kernels and
    collection failed. tests/__init__.py makes each folder `tests.<folder>`."""
    shadowed = []
    folders = [init.parent for init in TESTS.glob("*/__init__.py")]
    for folder in folders:
        spec = importlib.util.find_spec(folder.name)  # sys.modules' entry where the name is imported already
        if spec and folder in {Path(p).resolve() for p in spec.submodule_search_locations or ()}:
            shadowed.append(folder.name)
    assert folders and not shadowed, f"`import <folder>` finds the test folder for {shadowed}"
