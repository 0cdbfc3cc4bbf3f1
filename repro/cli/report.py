"""`repro report`: documented vs measured mIoU as markdown, CSV, JSON or HTML.

Fast to import: repro.report (and matplotlib for --plot) load inside the command; no pandas.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from repro.cli.app import app
from repro.cli.options import RESULTS_OPTION, with_help
from repro.text import counted

DEFAULT_TOLERANCE = 0.1  # repro.results.comparison.DEFAULT_TOLERANCE, repeated to keep the command module light


class ReportFormat(str, Enum):
    table = "table"  # every command's word for its human-readable output; here the markdown table
    md = "md"
    csv = "csv"
    json = "json"
    html = "html"


def _results_source(results: Path | None) -> tuple[Path | list, str | None]:
    """(the folder to read, or [] when the default folder does not exist yet; the line that says so).

    A --results folder that does not exist is an error (a typo, most likely); the default one
    not existing only means that nothing was evaluated yet.
    """
    from repro.paths import results_dir

    folder = results_dir(results)
    if results is not None:
        return folder, None
    if not folder.exists():
        return [], f"no results yet: {folder} does not exist (run `repro eval`, or pass --results DIR)"
    return folder, None


def _say_aside(report, fmt_name: str, output: Path | None, strict: bool = False) -> None:
    """On stderr what the report itself does not show: the notes on damaged files and the hidden
    rows (markdown and HTML on stdout say them), and the summary when the report went to a file."""
    from repro.report import table as reporting

    if output is not None:
        typer.echo(reporting.summary_line(report), err=True)
    if output is not None or fmt_name in ("csv", "json"):
        for note in reporting.notes_of(report):
            typer.echo(f"note: {note}", err=True)
        hidden = reporting.hidden_line(report)
        if hidden:
            typer.echo(hidden, err=True)
    if output is not None:
        typer.echo(f"wrote {output}", err=True)
    failed = reporting.failed_rows(report)
    if len(failed) and not strict:  # the next step for a number that does not reproduce (--strict ends on its error line)
        first = failed[0]
        typer.echo(f"{counted(len(failed), 'row')} not reproduced; why: `repro explain {first['model_id']} "
                   f"--protocol {first['protocol']}`" + (" (and the others)" if len(failed) > 1 else ""), err=True)


def _html_with_explain_pages(report, manifest, with_plot: bool) -> str:
    """The HTML page, each measured row's Model cell linked to its explain page (repro.explain.html),
    the pages themselves, pictures embedded, at the end: one self-contained file."""
    from repro.explain.html import explain_sections, report_appendix, report_row_link
    from repro.report import render as rendering

    files = [row["result_file"] for row in report if isinstance(row["result_file"], str)]
    appendix = report_appendix(explain_sections(files, manifest=manifest))
    svg = rendering.plot_svg_text(report) if with_plot else None
    return rendering.render_html(report, plot_svg=svg, row_link=report_row_link, appendix=appendix)


def _plot_and_render(table, manifest, fmt_name: str, plot: Path | None) -> str:
    """Draw the --plot first (a plot that cannot be drawn leaves no report), then the report text."""
    from repro.report import render as rendering

    if plot is not None:
        rendering.plot_deltas(table, plot)
    if fmt_name == "html":
        return _html_with_explain_pages(table, manifest, plot is not None)
    return rendering.render(table, fmt_name)


@app.command("report")
def report(
    ids: list[str] = typer.Argument(
        None, metavar="ID", help="Only these models (ids or aliases); adds their per-class IoU."
    ),
    results: Path = with_help(
        RESULTS_OPTION, "Folder of result files written by 'repro eval' (default: $REPRO_RESULTS, else <cache>/results)."
    ),
    fmt: ReportFormat = typer.Option(
        None, "--format", help="table (markdown, also 'md'), csv, json or html (default: from --output's extension, else table)."
    ),
    output: Path = typer.Option(None, "--output", "-o", help="Write the report here instead of stdout."),
    measured_only: bool = typer.Option(
        False,
        "--measured-only/--all-rows",
        help="Only the rows with a result, the others counted in one line (default: every row, as --all-rows).",
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
    from repro.report import render as rendering
    from repro.report import table as reporting
    from repro.fileio import atomic_write_text
    from repro.manifest import load_manifest

    if plot is not None:
        rendering.check_plot_format(plot)  # a bad extension fails before anything is read or written
    manifest = load_manifest(manifest_path)
    source, missing = _results_source(results)
    table = reporting.build_report(manifest, source, tolerance=tolerance, ids=ids or None, measured_only=measured_only)
    nothing = missing or reporting.no_results_line(table, source)
    if nothing:  # one line on stderr; the table still lists every row (not run), unless --measured-only
        typer.echo(nothing, err=True)
        if measured_only:
            return
    fmt_name = ("md" if fmt is ReportFormat.table else fmt.value) if fmt is not None else rendering.format_for_output(output)
    text = _plot_and_render(table, manifest, fmt_name, plot)
    if output is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(output, text)
    _say_aside(table, fmt_name, output, strict)
    if plot is not None:
        typer.echo(f"wrote {plot}", err=True)
        empty = rendering.plot_empty_reason(table)
        if empty:
            typer.echo(empty, err=True)
    if strict:
        failure = reporting.strict_failure(table)
        if failure is not None:
            raise failure
