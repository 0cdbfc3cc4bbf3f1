"""The `repro` command line: a thin layer over the Python API.

`cli/app.py` holds the Typer app and its command classes; each command group lives in its own
module and registers itself on `app` when imported (this file imports them, in the help's order).
Importing this package must stay cheap (`repro --version` and `repro list` start in well under a
second): command modules import torch, cv2, numpy, pandas, ... inside the command functions that
need them.
"""

from __future__ import annotations

from repro.cli.app import ReproCommand, ReproGroup, ReproTyper, app, usage_error_line  # noqa: F401

# Command groups register themselves on `app` when imported; this order is the help's order.
from repro.cli import zoo  # noqa: E402,F401,I001
from repro.cli import data  # noqa: E402,F401
from repro.cli import fetch  # noqa: E402,F401
from repro.cli import eval  # noqa: E402,F401
from repro.cli import report  # noqa: E402,F401
from repro.cli import explain  # noqa: E402,F401
from repro.cli import diff  # noqa: E402,F401
from repro.cli import status  # noqa: E402,F401
from repro.cli import selftest  # noqa: E402,F401


def main() -> None:
    """Console-script entry point."""
    app()
