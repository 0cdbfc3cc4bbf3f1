"""Options shared by several commands (same names and help everywhere).

`--data-root PATH` and `--dataset-root NAME=PATH` feed `repro.datasets.roots.resolve_dataset_root`;
use them as parameter defaults, e.g. `data_root: Path = DATA_ROOT_OPTION`.
"""

from __future__ import annotations

import copy
from enum import Enum

import typer


class TableOrJson(str, Enum):
    """--format of a command that prints data: `table` (plain text) for people, `json` for scripts."""

    table = "table"
    json = "json"


class TableTsvOrJson(str, Enum):
    """--format of a listing: also `tsv` for scripts that read columns."""

    table = "table"
    tsv = "tsv"
    json = "json"

DATA_ROOT_OPTION = typer.Option(
    None,
    "--data-root",
    metavar="PATH",
    show_default=False,
    help="Folder holding the dataset folders, or one dataset's own folder "
    "(default: $REPRO_DATA, else <cache>/data).",
)

DATASET_ROOT_OPTION = typer.Option(
    None,
    "--dataset-root",
    metavar="NAME=PATH",
    show_default=False,
    help="Where one dataset is, e.g. lip=/data/my_lip (repeatable; beats $REPRO_DATA_<NAME> and --data-root).",
)


def in_panel(option, panel: str):
    """A copy of a shared option shown in one help panel of a command (eval groups its options)."""
    placed = copy.copy(option)
    placed.rich_help_panel = panel
    return placed
