"""`repro report`: documented vs measured mIoU as markdown, CSV, JSON or HTML.

Fast to import: pandas and matplotlib (through repro.report) load inside the command.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from repro.cli import app

DEFAULT_TOLERANCE = 0.1  # repro.report.DEFAULT_TOLERANCE, repeated to keep pandas out of startup


class ReportFormat(str, Enum):
    md = "md"
    csv = "csv"
    json = "json"
    html = "html"


def _results_source(results_dir: Path | None):
    """The folder to read, or [] when the default folder does not exist yet (said on stderr).

    A --results folder that does not exist is an error (a typo, most likely); the default one
    not existing only means that nothing was evaluated yet.
    """
    from repro.paths import results_dir as default_results_dir

    if results_dir is not None:
        return results_dir
    folder = default_results_dir()
    if not folder.exists():
        typer.echo(f"no results yet: {folder} does not exist (run `repro eval`, or pass --results DIR)", err=True)
        return []
    return folder


@app.command("report")
def report(
    ids: list[str] = typer.Argument(
        None, metavar="ID", help="Only these models (ids or aliases); adds their per-class IoU."
    ),
    results_dir: Path = typer.Option(
        None,
        "--results",
        help="Folder of result files written by 'repro eval' (default: $REPRO_RESULTS, else <cache>/results).",
    ),
    fmt: ReportFormat = typer.Option(
        None, "--format", help="md, csv, json or html (default: the extension of --output, else md)."
    ),
    output: Path = typer.Option(None, "--output", "-o", help="Write the report here instead of stdout."),
    measured_only: bool = typer.Option(
        None,
        "--measured-only/--all-rows",
        help="Only the rows with a result, or every row (default: only those when fewer than 10% have one).",
        show_default=False,
    ),
    tolerance: float = typer.Option(
        DEFAULT_TOLERANCE, "--tolerance", help="Largest |measured - documented| that counts as reproduced."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Exit 1 when any compared row is outside the tolerance (for CI)."
    ),
    plot: Path = typer.Option(None, "--plot", help="Also draw Δ per model with the tolerance band (.png or .svg)."),
    manifest_path: Path = typer.Option(
        None, "--manifest", help="A model_zoo.yaml to report against (default: the bundled one, or $REPRO_MANIFEST)."
    ),
) -> None:
    """Compare the measured mIoU of every result file with the documented value.

    One table per document table (method, section, dataset), rows in document order.
    Δ is the measured value rounded to 2 decimals minus the documented one; ✓ means |Δ| <= --tolerance.
    """
    from repro import report as reporting
    from repro.fileio import atomic_write_text
    from repro.manifest import load_manifest

    manifest = load_manifest(manifest_path)
    frame = reporting.build_report(
        manifest, _results_source(results_dir), tolerance=tolerance, ids=ids or None, measured_only=measured_only
    )
    fmt_name = fmt.value if fmt is not None else reporting.format_for_output(output)

    if plot is not None:
        reporting.plot_deltas(frame, plot)  # first, so a bad extension fails before any output
    if fmt_name == "html" and plot is not None:
        text = reporting.render_html(frame, plot_svg=reporting.plot_svg_text(frame))
    else:
        text = reporting.render(frame, fmt_name)

    if output is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(output, text)
        typer.echo(reporting.summary_line(frame), err=True)
    hidden = reporting.hidden_line(frame)
    if hidden and (output is not None or fmt_name in ("csv", "json")):  # md and html say it themselves
        typer.echo(hidden, err=True)
    if output is not None:
        typer.echo(f"wrote {output}", err=True)
    if plot is not None:
        typer.echo(f"wrote {plot}", err=True)
        empty = reporting.plot_empty_reason(frame)
        if empty:
            typer.echo(empty, err=True)

    if strict:
        failure = reporting.strict_failure(frame)
        if failure is not None:
            raise failure
