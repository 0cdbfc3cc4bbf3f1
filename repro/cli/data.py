"""`repro data ...`: inspect and verify the evaluation datasets."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from repro.cli.app import DATASET_NAMES, ReproTyper, app
from repro.cli.layout import aligned_lines
from repro.cli.options import DATA_ROOT_OPTION, DATASET_ROOT_OPTION, TableTsvOrJson
from repro.errors import ReproError
from repro.text import counted

DEFAULT_SAMPLE = 20  # repro.datasets.check.DEFAULT_SAMPLE; repro.datasets (numpy, cv2) loads inside the commands

data_app = ReproTyper(
    name="data",
    help="Inspect and verify the evaluation datasets.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

console = Console()


def _where(name: str, data_root: Path | None, overrides: dict[str, Path]) -> tuple[str, str]:
    """(folder, present) of one dataset for `data list`: yes, no, or a folder of another layout."""
    from repro.datasets.roots import looks_like_dataset, resolve_dataset_root

    try:
        root = resolve_dataset_root(name, data_root, overrides)
    except ReproError as err:  # e.g. two candidate folders: say so in the row, list the others
        return str(err), "?"
    if looks_like_dataset(name, root):
        return str(root), "yes"
    return str(root), "not recognised" if root.exists() else "no"


LIST_COLUMNS = ("name", "dataset", "classes", "official images", "present", "folder")


def _dataset_rows(data_root: Path | None, overrides: dict[str, Path]) -> list[dict[str, str]]:
    from repro.datasets import DATASETS

    rows = []
    for name, spec in DATASETS.items():
        unit = "" if spec.count_unit == "images" else f" {spec.count_unit}"
        splits = ", ".join(f"{split} {count}{unit}" for split, count in spec.splits.items())
        folder, present = _where(name, data_root, overrides)
        rows.append(dict(zip(LIST_COLUMNS, (name, spec.title, str(spec.num_classes), splits, present, folder))))
    return rows


def _json_row(row: dict[str, str]) -> dict:
    from repro.datasets import DATASETS

    spec = DATASETS[row["name"]]
    return {"name": spec.name, "title": spec.title, "num_classes": spec.num_classes, "splits": dict(spec.splits),
            "count_unit": spec.count_unit, "present": row["present"], "folder": row["folder"]}


def _list_lines(rows: list[dict[str, str]], width: int | None) -> list[str]:
    """Plain aligned lines, nothing cut: one line per dataset, or (when that is wider than a
    terminal's `width`) the folder whole on an indented line of its own below its row."""
    lines = aligned_lines(rows, LIST_COLUMNS, right=("classes",))
    if width is None or max(map(len, lines)) <= width:
        return lines
    short = aligned_lines(rows, LIST_COLUMNS[:-1], right=("classes",))
    out = short[:1]
    for row, line in zip(rows, short[1:]):
        out += [line, f"  {row['folder']}"]
    return out


@data_app.command("list")
def list_datasets(
    data_root: Path = DATA_ROOT_OPTION,
    dataset_roots: list[str] = DATASET_ROOT_OPTION,
    fmt: TableTsvOrJson = typer.Option(TableTsvOrJson.table, "--format", help="table for people (plain aligned text), tsv or json for scripts."),
) -> None:
    """The datasets repro evaluates on, their splits and where they are found (or expected)."""
    from repro.datasets.roots import parse_dataset_roots

    rows = _dataset_rows(data_root, parse_dataset_roots(dataset_roots))
    if fmt is TableTsvOrJson.json:
        typer.echo(json.dumps([_json_row(row) for row in rows], indent=2))
        return
    if fmt is TableTsvOrJson.tsv:
        typer.echo("\n".join(["\t".join(LIST_COLUMNS), *("\t".join(r[c] for c in LIST_COLUMNS) for r in rows)]))
        return
    console.print("evaluation datasets", markup=False, highlight=False)
    width = console.width if console.is_terminal else None  # a pipe: one line per dataset, whatever its length
    console.print("\n".join(_list_lines(rows, width)), markup=False, highlight=False, soft_wrap=True)


def _say_if_accepted(spec, root: Path, allow_subset: bool) -> None:
    """A folder `repro fetch --allow-subset` accepted: say so, and how to check it as a subset."""
    from repro.fetch.subsets import accepted

    acceptance = accepted(spec.name, root)
    if acceptance and not allow_subset:
        typer.echo(f"note: this {spec.title} folder was {acceptance}; check it as such with "
                   f"`repro data check {spec.name} --allow-subset`", err=True)


@data_app.command("check")
def check(
    dataset: str = typer.Argument(..., help=f"Dataset name: {DATASET_NAMES} (any case)."),
    root: Path = typer.Option(
        None, "--root", help="Dataset folder (default: found from --dataset-root / --data-root, see `repro data list`)."
    ),
    data_root: Path = DATA_ROOT_OPTION,
    dataset_roots: list[str] = DATASET_ROOT_OPTION,
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
    from repro.datasets import check_dataset
    from repro.datasets.registry import find_dataset
    from repro.datasets.roots import parse_dataset_roots, resolve_dataset_root

    spec = find_dataset(dataset)  # any case; unknown names: usage error with suggestions
    root = root or resolve_dataset_root(spec.name, data_root, parse_dataset_roots(dataset_roots))
    result = check_dataset(spec.name, root, split, allow_subset=allow_subset, sample=sample)
    for note in dict.fromkeys(result.notes):
        typer.echo(f"note: {note}", err=True)
    if result:
        for problem in result:
            typer.echo(f"error: {problem}", err=True)
        _say_if_accepted(spec, result.root, allow_subset)
        typer.echo(f"{spec.title} at {result.root}: {counted(len(result), 'problem')}", err=True)
        raise typer.Exit(1)

    _print_check_table(spec, result)


def _check_rows(spec, result) -> tuple[list[str], list[dict[str, str]]]:
    """The columns and one row per split of a dataset check that found no problem."""
    columns = ["split", spec.count_unit, "official", *(["frames"] if spec.count_unit == "videos" else []),
               "labels read", "classes seen", "ignored px", "status"]
    rows = []
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
        rows.append(dict(zip(columns, row)))
    return columns, rows


def _print_check_table(spec, result) -> None:
    """The check's summary: a table on a terminal, plain aligned lines in a pipe or a log."""
    title = f"{spec.title} at {result.root}"
    columns, rows = _check_rows(spec, result)
    numbers = [c for c in columns if c not in ("split", "status")]
    if not console.is_terminal:
        console.print("\n".join([title, *aligned_lines(rows, columns, right=numbers)]),
                      markup=False, highlight=False, soft_wrap=True)
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column in numbers else "left")
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    console.print(table)
