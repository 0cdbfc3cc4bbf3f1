"""`repro data ...`: inspect and verify the evaluation datasets."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from repro.cli import app
from repro.datasets import DATASETS, check_dataset, get_spec
from repro.datasets.check import DEFAULT_SAMPLE
from repro.paths import dataset_root

data_app = typer.Typer(
    name="data",
    help="Inspect and verify the evaluation datasets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")

console = Console()


@data_app.command("list")
def list_datasets() -> None:
    """The datasets repro evaluates on, their splits and where they are expected."""
    table = Table(title="evaluation datasets")
    for column in ("name", "dataset", "classes", "splits (official size)", "folder", "present"):
        table.add_column(column, overflow="fold")
    for name, spec in DATASETS.items():
        splits = ", ".join(f"{split} ({count} {spec.count_unit})" for split, count in spec.splits.items())
        root = dataset_root(name)
        table.add_row(name, spec.title, str(spec.num_classes), splits, str(root), "yes" if root.is_dir() else "no")
    console.print(table)


@data_app.command("check")
def check(
    dataset: str = typer.Argument(..., help=f"Dataset name: {', '.join(DATASETS)}."),
    root: Path = typer.Option(
        None, "--root", help="Dataset folder (default: <data root>/<dataset folder>, see `repro data list`)."
    ),
    split: str = typer.Option(None, "--split", help="Check only this split (default: every evaluation split)."),
    allow_subset: bool = typer.Option(
        False, "--allow-subset", help="Accept fewer (or more) images than the official split, e.g. a mini dataset."
    ),
    sample: int = typer.Option(
        DEFAULT_SAMPLE, "--sample", min=0, help="Labels per split read and checked for their values."
    ),
) -> None:
    """Verify a dataset folder: layout, image counts, a label per image, label encoding.

    Exits non-zero with one line per problem; prints a summary table when all is well.
    """
    spec = get_spec(dataset)  # unknown names: usage error with suggestions
    result = check_dataset(spec.name, root, split, allow_subset=allow_subset, sample=sample)
    for note in dict.fromkeys(result.notes):
        typer.echo(f"note: {note}", err=True)
    if result:
        for problem in result:
            typer.echo(f"error: {problem}", err=True)
        typer.echo(f"{spec.title} at {result.root}: {len(result)} problem(s)", err=True)
        raise typer.Exit(1)

    table = Table(title=f"{spec.title} at {result.root}")
    table.add_column("split")
    table.add_column(spec.count_unit, justify="right")
    table.add_column("official", justify="right")
    if spec.count_unit == "videos":
        table.add_column("frames", justify="right")
    table.add_column("labels read", justify="right")
    table.add_column("classes seen", justify="right")
    table.add_column("ignored px", justify="right")
    table.add_column("status")
    for s in result.splits:
        row = [s.split, str(s.count), str(s.expected)]
        if spec.count_unit == "videos":
            row.append(str(s.frames))
        if s.has_labels:
            ignored = "-" if s.ignored_fraction is None else f"{100 * s.ignored_fraction:.1f}%"
            row += [str(s.labels_sampled), f"{s.classes_seen}/{spec.num_classes}", ignored]
        else:
            row += ["server", "-", "-"]  # test-server split: no public labels
        row.append("ok" if s.count == s.expected else "partial")
        table.add_row(*row)
    console.print(table)
