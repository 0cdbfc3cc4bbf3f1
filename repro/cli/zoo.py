"""`repro list` and `repro info`: what the manifest knows."""

from __future__ import annotations

import json
from enum import Enum

import typer
from rich.console import Console
from rich.table import Table

from repro.cli import app
from repro.manifest import PROTOCOL_NAMES, ModelEntry, load_manifest

console = Console()


class ListFormat(str, Enum):
    table = "table"
    json = "json"


def _matches(entry: ModelEntry, dataset: str | None, method: str | None, backbone: str | None) -> bool:
    if dataset and dataset.lower() not in (entry.dataset, entry.table.lower()):
        return False
    if method and method.lower() not in (entry.method, "mcibi++" if entry.method == "memorynetv2" else entry.method):
        return False
    if backbone:
        wanted = backbone.lower()
        if wanted not in entry.backbone.lower() and wanted not in entry.backbone_id:
            return False
    return True


def _documented_cell(entry: ModelEntry, protocol: str) -> str:
    if protocol not in entry.documented:
        return ""
    value = entry.documented[protocol]
    return "blank" if value is None else f"{value:.2f}"


@app.command("list")
def list_models(
    dataset: str = typer.Option(None, "--dataset", help="Only this dataset (ade20k, cityscapes, cocostuff10k, lip, voc, pascalcontext59, vspw)."),
    method: str = typer.Option(None, "--method", help="Only this method (mcibi or memorynetv2 / mcibi++)."),
    backbone: str = typer.Option(None, "--backbone", help="Only backbones matching this text (e.g. R-101, swin, hrnet)."),
    fmt: ListFormat = typer.Option(ListFormat.table, "--format", help="table for people, json for scripts."),
) -> None:
    """List the models of the zoo with their documented mIoU per protocol."""
    entries = [e for e in load_manifest().entries if _matches(e, dataset, method, backbone)]
    if fmt is ListFormat.json:
        rows = [
            {
                "id": e.id, "method": e.method, "head": e.head, "backbone": e.backbone, "dataset": e.dataset,
                "eval_split": e.eval_split, "eval": e.eval, "documented": e.documented,
            }
            for e in entries
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(entries)} models", show_lines=False)
    table.add_column("id", no_wrap=True)
    for column in ("method", "head", "backbone", "dataset"):
        table.add_column(column, overflow="fold")
    for column in PROTOCOL_NAMES:
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    for e in entries:
        table.add_row(e.id, e.method, e.segmentor, e.backbone, f"{e.dataset}/{e.eval_split}",
                      *(_documented_cell(e, p) for p in PROTOCOL_NAMES))
    console.print(table)


@app.command("info")
def info(model_id: str = typer.Argument(..., help="Model id or alias (see 'repro list').")) -> None:
    """Everything the manifest knows about one model, test protocols included."""
    entry = load_manifest().get(model_id)
    table = Table(title=entry.id, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    plain = entry.model_dump(exclude={"protocols", "notes", "weights", "config", "log", "documented", "schedule", "id"})
    for key, value in plain.items():
        table.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    s = entry.schedule
    table.add_row("schedule", f"lr {s.lr} / {s.policy} / batch {s.batch_size} / {s.epochs} epochs")
    table.add_row("documented", ", ".join(f"{p}: {'blank' if v is None else f'{v:.2f}'}" for p, v in entry.documented.items()))
    for kind in ("weights", "config", "log"):
        table.add_row(kind, "\n".join(getattr(entry, kind)) or "-")
    for note in entry.notes:
        table.add_row("note", note)
    console.print(table)

    proto = Table(title="test protocols (upstream settings; sizes are height, width)")
    for column in ("protocol", "upstream block", "resize", "mode", "crop / stride", "scales", "flip", "softmax before resize"):
        proto.add_column(column)
    for name, p in entry.protocols.items():
        resize = f"{p.resize.output_size[0]}x{p.resize.output_size[1]} {'keep ratio' if p.resize.keep_ratio else 'fixed'}"
        window = f"{p.crop_size} / {p.stride}" if p.mode == "slide" else "-"
        swaps = " ".join(f"{a}<->{b}" for a, b in p.flip_pairs)
        flip = ("yes" + (f", swap {swaps}" if swaps else "")) if p.flip else "no"
        proto.add_row(name, p.upstream_block, resize, p.mode, window, ", ".join(f"{s:g}" for s in p.scales), flip,
                      "yes" if p.probs_before_resize else "no")
    console.print(proto)
    n = entry.protocols[next(iter(entry.protocols))].normalize
    console.print(f"normalise (RGB): mean {n.mean}, std {n.std}")
