"""`repro list` and `repro info`: what the manifest knows.

Output rules: `list` shows the columns that fit the width (lower-priority columns are dropped,
never squeezed: a documented number is never cut and a row never wraps), as a table on a terminal
and as plain aligned text in a pipe (80 columns, or $COLUMNS; every column: --format tsv or json).
`info` prints URLs whole, on lines of their own, so that they can be copied at any width.
"""

from __future__ import annotations

import difflib
import json
import textwrap
from enum import Enum
from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from repro.cli.app import app
from repro.cli.layout import output_width, print_trimmed
from repro.cli.options import PROTOCOLS, TableTsvOrJson
from repro.text import counted
from repro.errors import ReproError

if TYPE_CHECKING:  # repro.manifest (pydantic, yaml) loads inside the commands: fast --version
    from rich.console import Console

    from repro.manifest import ModelEntry

UNKNOWN = "—"  # a value the manifest does not have; never "None"
METHOD_NAMES = {"mcibi": "mcibi", "memorynetv2": "memorynetv2", "mcibi++": "memorynetv2", "mcibiplusplus": "memorynetv2"}
# Columns of `repro list` after the id and the documented numbers, most useful first: at a narrow
# width the last ones are dropped.
# "segmentor" is the network (DeepLabV3, UperNet, ...) as in `info` and the report; "head" there is
# its decode head (aspp, upernet, ...).
OPTIONAL_COLUMNS = ("dataset", "backbone", "segmentor", "method")
DISPLAY_ORDER = ("id", "method", "segmentor", "backbone", "dataset", *PROTOCOLS)


class InfoFormat(str, Enum):
    table = "table"
    json = "json"
    text = "text"  # the old name of table, still accepted


def _suggest(value: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(value.lower(), choices, n=3, cutoff=0.5)
    return f"did you mean {' or '.join(close)}? " if close else ""


def _method(value: str) -> str:
    key = value.strip().lower()
    if key not in METHOD_NAMES:
        raise ReproError(f"unknown --method {value!r}; {_suggest(key, list(METHOD_NAMES))}choose from mcibi, memorynetv2 (or mcibi++)", exit_code=2)
    return METHOD_NAMES[key]


def _backbone_matches(entry: ModelEntry, wanted: str) -> bool:
    return wanted in entry.backbone.lower() or wanted in entry.backbone_id.lower()


def _with_backbone(entries: list[ModelEntry], backbone: str) -> list[ModelEntry]:
    wanted = backbone.strip().lower()
    kept = [e for e in entries if _backbone_matches(e, wanted)]
    if entries and not kept:
        names = sorted({e.backbone for e in entries})
        hint = _suggest(wanted, sorted({n.lower() for n in names} | {e.backbone_id for e in entries}))
        raise ReproError(f"no backbone matches --backbone {backbone!r}; {hint}backbones: {', '.join(names)}", exit_code=2)
    return kept


def select_entries(entries: list[ModelEntry], dataset: str | None, method: str | None, backbone: str | None) -> list[ModelEntry]:
    """The rows matching every filter; an unknown filter value is an error with suggestions (exit 2)."""
    from repro.datasets.roots import dataset_name

    if dataset is not None:
        wanted_dataset = dataset_name(dataset, "--dataset")
        entries = [e for e in entries if e.dataset == wanted_dataset]
    if method is not None:
        wanted_method = _method(method)
        entries = [e for e in entries if e.method == wanted_method]
    return entries if backbone is None else _with_backbone(entries, backbone)


def documented_text(entry: ModelEntry, protocol: str, missing: str = UNKNOWN) -> str:
    """The documented mIoU as printed (2 decimals); 'blank' for an empty cell of the document."""
    if protocol not in entry.documented:
        return missing
    value = entry.documented[protocol]
    return "blank" if value is None else f"{value:.2f}"


def _list_cells(entry: ModelEntry, missing: str = UNKNOWN) -> dict[str, str]:
    cells = {"id": entry.id}
    cells.update({p: documented_text(entry, p, missing) for p in PROTOCOLS})
    cells.update(dataset=f"{entry.dataset}/{entry.eval_split}", backbone=entry.backbone, segmentor=entry.segmentor, method=entry.method)
    return cells


def _rich_table(rows: list[dict[str, str]], columns: list[str], title: str):
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in PROTOCOLS else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    return table


def fitting_columns(fits: Callable[[list[str]], bool]) -> list[str] | None:
    """The id, the numbers, and as many optional columns (in priority order) as `fits` accepts,
    in display order; None when not even the id and the numbers fit."""
    def ordered(names: set[str]) -> list[str]:
        return [c for c in DISPLAY_ORDER if c in names]

    chosen = {"id", *PROTOCOLS}
    if not fits(ordered(chosen)):
        return None
    for optional in OPTIONAL_COLUMNS:
        if not fits(ordered(chosen | {optional})):
            break
        chosen.add(optional)
    return ordered(chosen)


def _fits_the_console(console: Console, rows: list[dict[str, str]], title: str) -> Callable[[list[str]], bool]:
    from rich.measure import Measurement

    unbounded = console.options.update_width(10_000)  # the table's natural width, not one fitted to the console
    return lambda columns: Measurement.get(console, unbounded, _rich_table(rows, columns, title)).maximum <= console.width


def plain_table(rows: list[dict[str, str]], columns: list[str]) -> str:
    """Columns aligned with spaces, numbers right-aligned, nothing cut: for pipes and logs."""
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) if rows else len(c) for c in columns}

    def line(cells: dict[str, str]) -> str:
        parts = [cells[c].rjust(widths[c]) if c in PROTOCOLS else cells[c].ljust(widths[c]) for c in columns]
        return "  ".join(parts).rstrip()

    return "\n".join([line({c: c for c in columns}), *(line(r) for r in rows)])


def print_list(console: Console, entries: list[ModelEntry]) -> None:
    """The `list` table on `console`: a rich table on a terminal, plain aligned text in a pipe or
    a log (no box), each with the columns that fit (the terminal's width; 80 or $COLUMNS in a pipe)."""
    title = counted(len(entries), "model")
    rows = [_list_cells(e) for e in entries]
    if not console.is_terminal:  # a pipe or a log: plain and uncut
        width = output_width(console.file)
        columns = fitting_columns(lambda names: max(map(len, plain_table(rows, names).splitlines())) <= width)
    else:
        columns = fitting_columns(_fits_the_console(console, rows, title))
        if columns is not None:
            console.print(_rich_table(rows, columns, title))
            return
    columns = columns or ["id", *PROTOCOLS]  # too narrow even for these: the essentials, uncut
    console.print(title, markup=False, highlight=False)
    console.print(plain_table(rows, columns), markup=False, highlight=False, soft_wrap=True)


@app.command("list")
def list_models(
    dataset: str = typer.Option(None, "--dataset", help="Only this dataset, any case (ade20k, cityscapes, cocostuff10k, lip, voc, pascalcontext59, vspw)."),
    method: str = typer.Option(None, "--method", help="Only this method (mcibi, or memorynetv2 alias mcibi++)."),
    backbone: str = typer.Option(None, "--backbone", help="Only backbones matching this text (e.g. R-101, swin, hrnet)."),
    fmt: TableTsvOrJson = typer.Option(TableTsvOrJson.table, "--format", help="table for people (plain aligned text in a pipe), tsv or json for scripts."),
) -> None:
    """List the models of the zoo with their documented mIoU per protocol."""
    from rich.console import Console

    from repro.manifest import load_manifest

    entries = select_entries(load_manifest().entries, dataset, method, backbone)
    if fmt is TableTsvOrJson.json:
        rows = [
            {
                "id": e.id, "method": e.method, "document": e.document_title, "segmentor": e.segmentor, "head": e.head,
                "backbone": e.backbone,
                "dataset": e.dataset, "eval_split": e.eval_split, "eval": e.eval, "documented": e.documented,
            }
            for e in entries
        ]
        typer.echo(json.dumps(rows, indent=2))
    elif fmt is TableTsvOrJson.tsv:
        columns = list(DISPLAY_ORDER)
        lines = ["\t".join(columns), *("\t".join(_list_cells(e, missing="")[c] for c in columns) for e in entries)]
        typer.echo("\n".join(lines))
    else:
        print_list(Console(), entries)


def _value_text(value) -> str:
    """A manifest value as text: lists joined, unknown values as a dash (never 'None')."""
    if value is None or value == []:
        return UNKNOWN
    if isinstance(value, list):
        return ", ".join(map(_value_text, value))
    return str(value)


def _field_rows(entry: ModelEntry) -> list[tuple[str, str]]:
    shown_elsewhere = {"id", "protocols", "notes", "weights", "config", "log", "documented", "schedule", "variants", "upstream_now",
                       "documented_conditions"}
    rows = []
    for key, value in entry.model_dump(exclude=shown_elsewhere).items():
        rows.append((key, entry.document_title if key == "document" else _value_text(value)))
    s = entry.schedule
    rows.append(("schedule", f"lr {s.lr} / {s.policy} / batch {s.batch_size} / {s.epochs} epochs"))
    rows.append(("documented", ", ".join(f"{p}: {documented_text(entry, p)}" for p in entry.documented)))
    if entry.upstream_now is not None:
        rows.append(("upstream now", entry.upstream_now.summary()))
    rows.append(("variants", ", ".join(v + (" (default)" if v == entry.default_variant else "") for v in entry.variants)))
    return rows


def _protocol_table(entry: ModelEntry):
    """Settings down, protocols across: three narrow columns fit 80 characters."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("setting", style="bold")
    for name in entry.protocols:
        table.add_column(name)
    settings: dict[str, list[str]] = {}
    for p in entry.protocols.values():
        swaps = " ".join(f"{a}<->{b}" for a, b in p.flip_pairs)
        values = {
            "upstream block": p.upstream_block,
            "resize": f"{p.resize.output_size[0]}x{p.resize.output_size[1]} {'keep ratio' if p.resize.keep_ratio else 'fixed'}",
            "mode": p.mode,
            "crop / stride": f"{p.crop_size} / {p.stride}" if p.mode == "slide" else UNKNOWN,
            "scales": ", ".join(f"{s:g}" for s in p.scales),
            "flip": ("yes" + (f", swap {swaps}" if swaps else "")) if p.flip else "no",
            "softmax before resize": "yes" if p.probs_before_resize else "no",
        }
        for key, value in values.items():
            settings.setdefault(key, []).append(value)
    for key, values in settings.items():
        table.add_row(key, *values)
    return table


def conditions_lines(entry: ModelEntry, width: int = 80) -> list[str]:
    """How each documented (and upstream_now) number was computed: one line per number, each
    reason and each piece of shared evidence once (all of it: `--format json`)."""
    import textwrap

    numbered = [("", entry.documented, entry.documented_conditions)]
    if entry.upstream_now is not None:
        numbered.append(("now ", entry.upstream_now.documented, entry.upstream_now.conditions))
    lines, reasons, shared = [], {}, {}
    for label, numbers, conditions in numbered:
        for protocol, found in conditions.items():
            first, *rest = found.evidence
            mark = reasons.setdefault(found.reason, f"[{chr(ord('a') + len(reasons))}]")
            lines.append(f"  {label}{protocol} {numbers[protocol]:.2f}: {found.summary()} {mark}; "
                         f"printed in {first.commit}, {first.date}")
            shared.update({fact.commit: fact for fact in rest})
    if not lines:
        return []
    def wrap(text: str) -> list[str]:
        return textwrap.wrap(text, width=max(40, width), subsequent_indent="      ")

    lines = [wrapped for line in lines for wrapped in wrap(line)]
    lines += [line for reason, mark in reasons.items() for line in wrap(f"  {mark} {reason}")]
    evidence = [line for f in shared.values() for line in wrap(f"  {f.commit} {f.date} {f.file}: \"{f.quote}\"")]
    return ["arithmetic behind the numbers (upstream's git history):", *lines, "evidence:", *evidence]


def print_info(console: Console, entry: ModelEntry) -> None:
    from rich import box
    from rich.table import Table

    plain = {"markup": False, "highlight": False}
    fields = Table(title=entry.id, show_header=False, box=box.SIMPLE, title_justify="left")
    fields.add_column("field", style="bold", no_wrap=True)
    fields.add_column("value")
    for key, value in _field_rows(entry):
        fields.add_row(key, value)
    print_trimmed(console, fields)
    for kind in ("weights", "config", "log"):  # whole URLs, one per line, never wrapped or cut
        urls = getattr(entry, kind)
        console.print(f"{kind}:" + ("" if urls else f" {UNKNOWN}"), **plain)
        for url in urls:
            console.print(f"  {url}", soft_wrap=True, **plain)
    for note in entry.notes:  # wrapped here: rich's wrapping pads the broken lines with spaces
        for line in textwrap.wrap(f"note: {note}", width=console.width, subsequent_indent="  ", break_long_words=False):
            console.print(line, soft_wrap=True, **plain)
    for line in conditions_lines(entry, min(console.width, 100)):
        console.print(line, soft_wrap=True, **plain)
    console.print()
    console.print("test protocols (upstream settings; sizes are height, width)", **plain)
    print_trimmed(console, _protocol_table(entry))
    n = entry.protocols[next(iter(entry.protocols))].normalize
    console.print(f"normalise (RGB): mean {n.mean}, std {n.std}", **plain)


@app.command("info")
def info(
    model_id: str = typer.Argument(..., metavar="ID", help="Model id or alias (see 'repro list')."),
    fmt: InfoFormat = typer.Option(InfoFormat.table, "--format", help="table for people (also 'text'), json for scripts."),
) -> None:
    """Everything the manifest knows about one model, test protocols and download URLs included."""
    from rich.console import Console

    from repro.manifest import load_manifest

    entry = load_manifest().get(model_id)
    if fmt is InfoFormat.json:
        data = {}
        for key, value in entry.model_dump(mode="json").items():  # the title beside the document's file name
            data[key] = value
            if key == "document":
                data["document_title"] = entry.document_title
        data["default_variant"] = entry.default_variant
        typer.echo(json.dumps(data, indent=2))
        return
    print_info(Console(), entry)
