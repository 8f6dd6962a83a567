"""Every test file is collected: pytest silently skips folders that match `norecursedirs` (its default list
has `build`, `dist`, `venv`, ...), which once hid the whole engine-builder suite from CI."""

from fnmatch import fnmatch
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_no_test_folder_matches_norecursedirs(pytestconfig):
    patterns = pytestconfig.getini("norecursedirs")
    folders = {p.parent for p in TESTS.rglob("test_*.py")} - {TESTS}
    hidden = sorted(str(f.relative_to(TESTS)) for f in folders for part in f.relative_to(TESTS).parts
                    if any(fnmatch(part, pat) for pat in patterns))
    assert folders and not hidden, f"pytest would never collect {hidden} (norecursedirs {patterns})"
