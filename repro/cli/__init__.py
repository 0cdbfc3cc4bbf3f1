"""The `repro` command line: a thin layer over the Python API.

Each command group lives in its own module and registers itself on `app`.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from repro import __version__
from repro.errors import ReproError


class _ReproGroup(TyperGroup):
    """Turns a ReproError raised by any command into one line on stderr and its exit code."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except ReproError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None
        except OSError as err:  # full disk, permissions, ...: the OS's words, one line
            where = f": {err.filename}" if err.filename else ""
            typer.echo(f"error: {err.strerror or err}{where}", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_ReproGroup,
    name="repro",
    help="Re-measure the published mIoU of the MCIBI / MCIBI++ (MemoryNetV2) model zoo.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"repro {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Re-measure the published mIoU of the MCIBI / MCIBI++ (MemoryNetV2) model zoo."""


# Command groups register themselves on `app` when imported.
from repro.cli import zoo  # noqa: E402,F401

for _optional in ("data", "fetch", "eval", "report"):
    try:
        __import__(f"repro.cli.{_optional}")
    except ModuleNotFoundError as err:  # a group still under construction
        if err.name != f"repro.cli.{_optional}":
            raise


def main() -> None:
    """Console-script entry point."""
    app()
