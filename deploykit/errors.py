"""User-facing errors.

Anything a user can fix (bad flag, unknown GPU, missing file, missing optional dependency) raises
DeployKitError; the CLI prints it as one line and exits with code 2. Everything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class DeployKitError(Exception):
    """A problem the user can fix. `hint` says how, in a few words."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class MissingDependencyError(DeployKitError):
    """An optional extra is not installed."""

    def __init__(self, module: str, extra: str):
        super().__init__(
            f"this command needs the Python package '{module}', which is not installed",
            f"install it with: pip install 'deploykit[{extra}]'",
        )


def require(module: str, extra: str):
    """Import an optional dependency or raise a one-line, fixable error."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        if exc.name and not module.startswith(exc.name.split(".")[0]):
            raise
        raise MissingDependencyError(module, extra) from exc
