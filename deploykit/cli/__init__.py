"""The `deploykit` command line: a thin layer over the library.

Each command lives in its own module (plan.py, export.py, ...) with a `register(app)` function, holds
only typer declarations, one library call and rendering, and imports heavy libraries (torch, onnx,
tensorrt) inside the command body so that `deploykit plan` starts without them.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from deploykit import __version__
from deploykit.errors import DeployKitError

# Command modules, in --help order. A module that does not exist yet is skipped.
COMMAND_MODULES = ("plan", "export", "validate", "build")

app = typer.Typer(
    name="deploykit",
    help="Plan, export, build and validate Qwen3.5 deployments.\n\n"
    "Start with: deploykit plan --gpus 4xA100",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"deploykit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Plan, export, build and validate Qwen3.5 deployments."""


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"deploykit.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"deploykit.cli.{name}":
                continue
            raise
        module.register(app)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit code 2; DEPLOYKIT_DEBUG=1 shows tracebacks."""
    try:
        app(args=argv, prog_name="deploykit", standalone_mode=False)
    except DeployKitError as exc:
        if os.environ.get("DEPLOYKIT_DEBUG") == "1":
            raise
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:  # raised by click for --help
        return int(exc.code or 0)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # click usage errors
        import click

        # typer >= 0.2x vendors click: its usage errors derive from typer.TyperException, not click's classes.
        if isinstance(exc, click.exceptions.ClickException) or (
            isinstance(exc, typer.TyperException) and hasattr(exc, "show")
        ):
            ctx = getattr(exc, "ctx", None)
            command = ctx.command_path if ctx is not None else "deploykit"
            message = " ".join(exc.format_message().split())  # one line, as every deploykit error
            typer.echo(f"error: {message} (see '{command} --help')", err=True)
            return 2
        if isinstance(exc, click.exceptions.Abort):
            return 130
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
