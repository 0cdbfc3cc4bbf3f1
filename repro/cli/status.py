"""`repro status`: for each model, is the checkpoint cached, the dataset complete, what was run?

A fast command: no torch (tested), no checkpoint loading, no label reads.
"""

from __future__ import annotations

from pathlib import Path

import typer

from repro.cli.app import app
from repro.cli.layout import output_width
from repro.cli.options import DATA_ROOT_OPTION, DATASET_ROOT_OPTION, RESULTS_OPTION, TableOrJson


@app.command("status")
def status(
    ids: list[str] = typer.Argument(None, help="Only these models (ids or aliases); default: all."),
    fmt: TableOrJson = typer.Option(TableOrJson.table, "--format", help="table (plain text) or json."),
    verify: bool = typer.Option(
        False, "--verify", help="Re-hash the cached checkpoints (slow for large files) instead of trusting fetch's record."
    ),
    results: Path = RESULTS_OPTION,
    data_root: Path = DATA_ROOT_OPTION,
    dataset_roots: list[str] = DATASET_ROOT_OPTION,
    manifest_path: Path = typer.Option(
        None, "--manifest", help="A model_zoo.yaml (default: the bundled one, or $REPRO_MANIFEST)."
    ),
) -> None:
    """Per model: checkpoint cached? dataset complete? which protocols have results?

    The checkpoint (cached / verified), the dataset (present / complete) and the results per protocol (complete / partial / stale / not run), with the command that fixes what is missing.
    """
    from repro import status as status_api
    from repro.datasets.roots import parse_dataset_roots
    from repro.manifest import load_manifest

    roots = parse_dataset_roots(dataset_roots)  # checked first, as before the manifest is read
    report = status_api.model_statuses(
        ids or None, manifest=load_manifest(manifest_path), results_dir=results, data_root=data_root,
        dataset_roots=roots, verify=verify,
    )
    if fmt is TableOrJson.json:
        typer.echo(status_api.status_json(report), nl=False)
    else:
        typer.echo(status_api.render_table(report, width=output_width()), nl=False)
