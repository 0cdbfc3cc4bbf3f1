"""Options shared by several commands, declared once here (same names, help and checks everywhere).

Use them as parameter defaults, e.g. `results: Path = RESULTS_OPTION`; `in_panel` places a copy
in one of eval's help panels, `with_help` gives a copy a command's own help text. The variable a
command receives is named after the option (`results`, `protocol`, `data_root`, `dataset_roots`); `--data-root` and
`--dataset-root NAME=PATH` feed `repro.datasets.roots.resolve_dataset_root`.

An old spelling stays accepted as a hidden alias: a second name of the same option (`--tta` of
`--protocol`, `--output` of eval's and selftest's `--results`), listed in `repro.cli.app.HIDDEN_ALIASES`
so that the help shows only the current name.
"""

from __future__ import annotations

import copy
from enum import Enum

import typer

from repro.cli.app import HIDDEN_ALIASES


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

# --results: the folder of the result files, in every command that writes or reads them
# (repro.paths.results_dir resolves it; EngineOptions does so once for eval).
RESULTS_OPTION = typer.Option(
    None,
    "--results",
    metavar="DIR",
    show_default=False,
    help="Folder of the result files (default: $REPRO_RESULTS, else <cache>/results).",
)

# --protocol: a test protocol of the manifest (repro.manifest.PROTOCOL_NAMES, repeated to keep the
# CLI free of the manifest's imports; tests/test_cli_options.py checks they agree). `--tta` is
# eval's old name for it.
PROTOCOLS = ("single", "flip", "ms+flip")
DOCUMENTED = "documented"  # eval only: every protocol the row documents
HIDDEN_ALIASES.update({"--tta": "--protocol", "--output": "--results"})


def _protocol_checker(choices: tuple[str, ...]):
    def check(value: str | None) -> str | None:
        if value is not None and value not in choices:  # click's wording: repro.cli.app suggests a close one
            raise typer.BadParameter(f"'{value}' is not one of {', '.join(repr(c) for c in choices)}",
                                     param_hint="'--protocol'")
        return value

    return check


def protocol_option(*, documented: bool, help: str) -> typer.models.OptionInfo:
    """--protocol (old name --tta): single, flip or ms+flip, and for `eval` also 'documented', its
    default. `help` says what the command does with it."""
    choices = (*PROTOCOLS, DOCUMENTED) if documented else PROTOCOLS
    return typer.Option(
        DOCUMENTED if documented else None, "--protocol", "--tta", metavar=f"[{'|'.join(choices)}]",
        callback=_protocol_checker(choices), show_default=documented, help=help,
    )


def with_results_old_name(option):
    """A copy of RESULTS_OPTION that also answers to its old name --output (eval, selftest; where
    --output/-o names a file the command writes, it keeps that meaning)."""
    renamed = copy.copy(option)
    renamed.param_decls = (*option.param_decls, "--output")
    return renamed


def with_help(option, text: str):
    """A copy of a shared option with a command's own help text (same names and checks)."""
    changed = copy.copy(option)
    changed.help = text
    return changed


def in_panel(option, panel: str):
    """A copy of a shared option shown in one help panel of a command (eval groups its options)."""
    placed = copy.copy(option)
    placed.rich_help_panel = panel
    return placed
