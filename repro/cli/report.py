"""`repro report`: documented vs measured mIoU as markdown, CSV, JSON or HTML."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from repro import report as reporting
from repro.cli import app
from repro.results import atomic_write_text


class ReportFormat(str, Enum):
    md = "md"
    csv = "csv"
    json = "json"
    html = "html"


@app.command("report")
def report(
    ids: list[str] = typer.Argument(
        None, metavar="ID", help="Only these models (ids or aliases); adds their per-class IoU."
    ),
    results_dir: Path = typer.Option(
        Path("results"), "--results", help="Folder of result files written by 'repro eval'."
    ),
    fmt: ReportFormat = typer.Option(
        None, "--format", help="md, csv, json or html (default: the extension of --output, else md)."
    ),
    output: Path = typer.Option(None, "--output", "-o", help="Write the report here instead of stdout."),
    tolerance: float = typer.Option(
        reporting.DEFAULT_TOLERANCE, "--tolerance", help="Largest |measured - documented| that counts as reproduced."
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
    from repro.manifest import load_manifest

    manifest = load_manifest(manifest_path)
    frame = reporting.build_report(manifest, results_dir, tolerance=tolerance, ids=ids or None)
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
        typer.echo(f"wrote {output}", err=True)
    if plot is not None:
        typer.echo(f"wrote {plot}", err=True)

    if strict:
        failure = reporting.strict_failure(frame)
        if failure is not None:
            raise failure
