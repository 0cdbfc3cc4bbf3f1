"""`repro explain`: why a measured number is what it is (repro.explain, pictures: repro.explain.draw).

Fast to import: numpy, pandas, matplotlib load inside the command.
"""

from __future__ import annotations

from pathlib import Path

import typer

from repro.cli.app import app
from repro.cli.layout import output_width
from repro.cli.options import RESULTS_OPTION, TableOrJson, protocol_option


@app.command("explain")
def explain(
    target: str = typer.Argument(..., metavar="ID", help="Model id or alias, or a result file (.json)."),
    protocol: str = protocol_option(documented=False, help="The result of this protocol (default: the first with a result)."),
    results: Path = RESULTS_OPTION,
    output: Path = typer.Option(
        None, "--output", "-o", help="Draw pictures here (worst images, confusion heatmap, per-class IoU; PNG) and index.html."
    ),
    images: int = typer.Option(4, "--images", min=0, help="How many of the worst images to draw with --output."),
    top: int = typer.Option(10, "--top", min=1, help="Rows per table (classes, confusions, images)."),
    fmt: TableOrJson = typer.Option(TableOrJson.table, "--format", help="table (plain text) for people, json for scripts."),
    manifest_path: Path = typer.Option(
        None, "--manifest", help="A model_zoo.yaml (default: the bundled one, or $REPRO_MANIFEST)."
    ),
) -> None:
    """Why a measured number is what it is, and the likely cause when it is off.

    Δ against the documents, the conditions, per-class IoU worst first, top confusions, the worst images, and a one-line likely cause for each check that fires.

    Reads the result's evidence sidecar (recorded by `repro eval`); an older result without one is explained as far as its JSON allows.
    """
    from repro.explain import explanation as api
    from repro.manifest import load_manifest

    manifest = load_manifest(manifest_path)
    path = api.find_result(target, protocol, results, manifest)
    explanation = api.explain_result(path, manifest=manifest, top=top)
    if fmt is TableOrJson.json:
        typer.echo(api.explanation_json(explanation), nl=False)
    else:
        typer.echo(api.explanation_text(explanation, width=_width()), nl=False)
    if output is not None:
        from repro.explain.html import write_explain_folder

        drawn = write_explain_folder(explanation, output, num_images=images)
        if fmt is TableOrJson.table:  # with json, stdout stays one JSON document
            _say_drawn(drawn, output)


def _say_drawn(drawn, output: Path) -> None:
    from repro.explain.explanation import wrap

    typer.echo("")
    for note in drawn.notes:
        typer.echo("\n".join(wrap(note, _width(), indent="", hanging="  ")))
    if drawn.files:
        typer.echo(f"pictures in {output}:")
        for file in drawn.files:
            typer.echo(f"  {file.relative_to(output)}")
    typer.echo(f"page with everything: {output / 'index.html'}")


def _width() -> int:
    """The width explain's text wraps to: the output's, at least 60 and at most 100 columns."""
    return max(60, output_width(most=100))
