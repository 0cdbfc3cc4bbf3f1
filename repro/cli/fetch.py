"""`repro fetch`: checkpoints and datasets onto disk, verified (see repro.fetch)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from repro.cli import app
from repro.errors import FetchError, ReproError


class SourceChoice(str, Enum):
    upstream = "upstream"
    official = "official"


def _plan(ids: list[str], all_models: bool, datasets: list[str], weights_only: bool, data_only: bool):
    """(model entries, dataset names) to fetch, de-duplicated, in order; unknown ids raise first."""
    from repro.fetch import dataset_sources
    from repro.manifest import load_manifest

    if weights_only and data_only:
        raise ReproError("--weights-only and --data-only exclude each other", exit_code=2)
    if all_models and ids:
        raise ReproError("name model ids or use --all, not both", exit_code=2)
    manifest = load_manifest()
    entries = manifest.entries if all_models else [manifest.get(i) for i in ids]
    entries = list({e.id: e for e in entries}.values())
    names: list[str] = []
    if not weights_only:
        names += [e.dataset for e in entries]
    names += [dataset_sources(d).name for d in datasets]  # an explicit --dataset always counts
    return ([] if data_only else entries), list(dict.fromkeys(names))


@app.command("fetch")
def fetch(
    ids: list[str] = typer.Argument(None, help="Model ids or aliases (see `repro list`).", show_default=False),
    all_models: bool = typer.Option(False, "--all", help="Every model of the zoo."),
    weights_only: bool = typer.Option(False, "--weights-only", help="Checkpoints only, no dataset."),
    data_only: bool = typer.Option(False, "--data-only", help="Datasets only, no checkpoint."),
    dataset: list[str] = typer.Option(
        None, "--dataset", help="A dataset to fetch (ade20k, cityscapes, cocostuff10k, lip, voc, pascalcontext59, vspw); repeatable."
    ),
    root: Path = typer.Option(None, "--root", help="Put the dataset exactly here (one dataset only)."),
    data_root: Path = typer.Option(
        None, "--data-root", envvar="REPRO_DATA", help="Where datasets live (default: <cache>/data)."
    ),
    from_: list[Path] = typer.Option(
        None, "--from", help="Import a checkpoint file, or dataset archive(s) / a folder of them, obtained elsewhere."
    ),
    mirror: str = typer.Option(
        None, "--mirror", envvar="REPRO_MIRROR", help="Replace https://github.com/ in GitHub release URLs by this base."
    ),
    source: SourceChoice = typer.Option(None, "--source", help="Try this dataset source first."),
    force: bool = typer.Option(False, "--force", help="Download again; accept a digest different from the lock file's."),
    keep_archives: bool = typer.Option(False, "--keep-archives", help="Keep dataset archives after unpacking."),
    manual: bool = typer.Option(False, "--manual", help="Print the manual download steps of the dataset(s) and exit."),
    where: bool = typer.Option(False, "--where", help="Print the cache folder and exit."),
    pin: Path = typer.Option(None, "--pin", help="Write a copy of the manifest with the recorded sha256 digests."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress output on stderr."),
) -> None:
    """Download checkpoints and datasets, verify them and cache them (resumable, mirror-aware).

    `repro fetch ID` fetches the checkpoint of ID and the dataset its row is evaluated on.
    """
    from repro.fetch import fetch_checkpoint, fetch_dataset, manual_steps, pin_manifest
    from repro.paths import cache_home

    if where:
        typer.echo(str(cache_home()))
        return
    if pin is not None:
        pins = pin_manifest(pin)
        typer.echo(f"wrote {pin} with {len(pins)} sha256 digest(s)")
        return
    ids = ids or []
    datasets = dataset or []
    if manual:
        names = list(dict.fromkeys(datasets)) or []
        if ids or all_models:
            names += [n for n in _plan(ids, all_models, [], False, True)[1] if n not in names]
        if not names:
            raise ReproError("--manual needs --dataset NAME or a model id", exit_code=2)
        typer.echo("\n\n".join(manual_steps(n) for n in names))
        return
    if not ids and not all_models and not datasets:
        raise ReproError("name model ids, --all or --dataset NAME (see `repro fetch --help`)", exit_code=2)

    entries, dataset_names = _plan(ids, all_models, datasets, weights_only, data_only)
    sources = [str(p) for p in from_ or []]
    if sources and len(entries) + len(dataset_names) != 1:
        raise ReproError(
            "--from imports one item: name one model id with --weights-only, or one --dataset", exit_code=2
        )
    if sources and entries and len(sources) != 1:
        raise ReproError("--from takes a single checkpoint file", exit_code=2)
    if root is not None and len(dataset_names) != 1:
        raise ReproError("--root names the folder of one dataset; fetch one dataset at a time", exit_code=2)

    failures: list[str] = []
    total = len(entries) + len(dataset_names)

    def run(label: str, action) -> None:
        try:
            typer.echo(f"{label}: {action()}")
        except ReproError as err:
            if total == 1:
                raise
            failures.append(label)
            typer.echo(f"error: {label}: {err}", err=True)

    for entry in entries:
        run(
            entry.id,
            lambda entry=entry: fetch_checkpoint(
                entry.id, force=force, source=sources[0] if sources else None, mirror=mirror, progress=progress
            ),
        )
    for name in dataset_names:
        run(
            name,
            lambda name=name: fetch_dataset(
                name,
                root=root,
                data_root_override=data_root,
                force=force,
                sources=sources or None,
                prefer=source.value if source else None,
                mirror=mirror,
                progress=progress,
                keep_archives=keep_archives,
            ),
        )
    if failures:
        raise FetchError(f"{len(failures)} of {total} item(s) failed: {', '.join(failures)}")
