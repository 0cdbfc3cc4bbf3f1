"""`repro diff A B`: what changed between two runs of one row and protocol (repro.explain.diff).

Fast to import: numpy and pydantic load inside the command.
"""

from __future__ import annotations

from pathlib import Path

import typer

from repro.cli.app import app
from repro.cli.layout import output_width
from repro.cli.options import RESULTS_OPTION, TableOrJson, protocol_option, with_help


@app.command("diff")
def diff(
    a: str = typer.Argument(..., metavar="A", help="A result file (.json), or a model id / alias."),
    b: str = typer.Argument(..., metavar="B", help="A result file (.json), or a model id / alias."),
    results: list[Path] = with_help(
        RESULTS_OPTION, "Results folder for an id: once for both sides, twice for A then B (default: $REPRO_RESULTS)."
    ),
    protocol: str = protocol_option(documented=False, help="For ids: the results of this protocol (default: the first with a result)."),
    fmt: TableOrJson = typer.Option(TableOrJson.table, "--format", help="table (plain text) for people, json for scripts."),
    top: int = typer.Option(10, "--top", min=1, help="Rows per table (classes, images)."),
) -> None:
    """What changed between two runs of one row and protocol.

    Δ mIoU, per-class Δ, the images that moved most, pixel agreement (when both saved predictions) and the conditions that differ.

    Two different rows or protocols: exit 2.
    """
    from repro.explain import diff as api
    from repro.errors import ReproError
    from repro.explain.explanation import find_result

    folders = list(results or [])
    if len(folders) > 2:
        raise ReproError("--results is given once (both sides) or twice (A, then B)", exit_code=2)
    folder_a = folders[0] if folders else None
    folder_b = folders[-1] if folders else None
    path_a = find_result(a, protocol, folder_a)
    path_b = find_result(b, protocol, folder_b)
    if path_a.resolve() == path_b.resolve():
        raise ReproError(f"A and B are the same file ({path_a}); give two files, or --results twice", exit_code=2)
    result = api.diff_results(path_a, path_b, top=top)
    typer.echo(api.diff_json(result) if fmt is TableOrJson.json else api.diff_text(result, output_width()), nl=False)
