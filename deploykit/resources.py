"""Locates the data shipped with the package (profiles/), installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def profiles_dir() -> Path:
    """The profiles/ folder: deploykit/profiles inside an installed wheel, <repo>/profiles in a checkout."""
    installed = _PACKAGE / "profiles"
    return installed if installed.is_dir() else _PACKAGE.parent / "profiles"
