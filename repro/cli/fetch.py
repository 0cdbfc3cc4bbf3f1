"""`repro fetch`: checkpoints and datasets onto disk, verified (see repro.fetch)."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path

import typer

from repro.cli.app import app
from repro.cli.options import DATA_ROOT_OPTION, DATASET_ROOT_OPTION
from repro.errors import FetchError, ReproError
from repro.text import counted


class SourceChoice(str, Enum):
    upstream = "upstream"
    official = "official"


def _plan(ids: list[str], all_models: bool, datasets: list[str], weights_only: bool, data_only: bool):
    """(model entries, dataset names) to fetch, de-duplicated, in order; unknown ids raise first."""
    from repro.datasets.registry import find_dataset
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
    names += [find_dataset(d, aliases=True).name for d in datasets]  # an explicit --dataset always counts
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
    data_root: Path = DATA_ROOT_OPTION,
    dataset_roots: list[str] = DATASET_ROOT_OPTION,
    from_: list[Path] = typer.Option(
        None,
        "--from",
        help="Import what you already have: a checkpoint file (with one model id), dataset archive(s), "
        "a folder of them, or an unpacked dataset folder (registered as a link, no copy).",
    ),
    link: bool = typer.Option(False, "--link", help="With --from FILE.pth: link the checkpoint into the cache instead of copying it."),
    allow_subset: bool = typer.Option(False, "--allow-subset", help="Accept a dataset with fewer images than the official split."),
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

    `repro fetch ID` fetches the checkpoint of ID and the dataset its row is evaluated on;
    `repro fetch ID --from FILE.pth` imports a checkpoint you already have.
    """
    from repro.paths import cache_home

    if where:
        typer.echo(str(cache_home()))
        return
    if pin is not None:
        from repro.fetch import pin_manifest

        pins = pin_manifest(pin)
        typer.echo(f"wrote {pin} with {counted(len(pins), 'sha256 digest')}")
        return
    ids, datasets, sources = ids or [], dataset or [], [str(p) for p in from_ or []]
    if manual:
        _print_manual(ids, all_models, datasets)
        return
    if not ids and not all_models and not datasets:
        raise ReproError("name model ids, --all or --dataset NAME (see `repro fetch --help`)", exit_code=2)
    if link and not sources:
        raise ReproError("--link goes with --from (a checkpoint file or an unpacked dataset folder)", exit_code=2)
    # One model id with --from: the file is its checkpoint; no dataset is implied.
    weights_only = weights_only or bool(sources and ids and not datasets and not data_only)
    entries, dataset_names = _plan(ids, all_models, datasets, weights_only, data_only)
    _check_from(sources, entries, dataset_names, root)
    from repro.datasets.roots import parse_dataset_roots

    common = dict(force=force, mirror=mirror, progress=progress)
    checkpoint_options = dict(source=sources[0] if sources else None, link=link,
                              fits=model_fits if sources else None, **common)
    dataset_options = dict(
        root=root, data_root_override=data_root, overrides=parse_dataset_roots(dataset_roots),
        sources=sources or None, prefer=source.value if source else None, keep_archives=keep_archives,
        allow_subset=allow_subset, link=link, **common,
    )
    _run_items(_fetch_items(entries, dataset_names, checkpoint_options, dataset_options))


def _fetch_items(entries, dataset_names: list[str], checkpoint_options: dict, dataset_options: dict):
    """(name, fetch it) for each checkpoint, then each dataset; repro.fetch loads when one runs."""

    def get_checkpoint(model_id: str):
        from repro.fetch import fetch_checkpoint

        return fetch_checkpoint(model_id, **checkpoint_options)

    def get_dataset(name: str):
        from repro.fetch import fetch_dataset

        return fetch_dataset(name, **dataset_options)

    items = [(e.id, lambda model_id=e.id: get_checkpoint(model_id)) for e in entries]
    return items + [(n, lambda n=n: get_dataset(n)) for n in dataset_names]


def model_fits(model_id: str, path: Path) -> None:
    """The engine's strict key and shape check of a checkpoint, on a model built on the "meta"
    device (shapes only: nothing allocated, nothing computed); CheckpointError when it does not fit."""
    from repro.models import load_segmentor

    load_segmentor(model_id, path, meta=True)


def _print_manual(ids: list[str], all_models: bool, datasets: list[str]) -> None:
    from repro.fetch import manual_steps

    names = list(dict.fromkeys(datasets))
    if ids or all_models:
        names += [n for n in _plan(ids, all_models, [], False, True)[1] if n not in names]
    if not names:
        raise ReproError("--manual needs --dataset NAME or a model id", exit_code=2)
    typer.echo("\n\n".join(manual_steps(n) for n in names))


def _check_from(sources: list[str], entries, dataset_names: list[str], root) -> None:
    if sources and len(entries) + len(dataset_names) != 1:
        raise ReproError(
            "--from imports one item: name one model id (its checkpoint file) or one --dataset", exit_code=2
        )
    if sources and entries and len(sources) != 1:
        raise ReproError("--from takes a single checkpoint file", exit_code=2)
    if root is not None and len(dataset_names) != 1:
        raise ReproError("--root names the folder of one dataset; fetch one dataset at a time", exit_code=2)


def _error_text(label: str, err: ReproError) -> str:
    """`error: <item>: <what failed>`. A failed download names its item itself and holds only
    hosts and reasons (its URLs and --from line are printed whole above it): it is wrapped between
    words at the output's width (80 in a pipe), continuation lines indented."""
    import sys
    import textwrap

    from repro.cli.layout import output_width
    from repro.fetch.download import DownloadFailed

    if not isinstance(err, DownloadFailed):
        return f"error: {label}: {err}"
    return "\n".join(textwrap.wrap(f"error: {err}", width=output_width(sys.stderr), subsequent_indent="  ",
                                   break_long_words=False, break_on_hyphens=False))


def _run_items(items: list[tuple[str, Callable[[], Path]]]) -> None:
    """Fetch each item, printing `label: path`; a failure stops only that item (unless alone)."""
    from repro.fetch.download import DownloadFailed

    failures: list[str] = []
    try:
        for label, action in items:
            try:
                typer.echo(f"{label}: {action()}")
            except ReproError as err:
                if len(items) == 1 and not isinstance(err, DownloadFailed):
                    raise
                typer.echo(_error_text(label, err), err=True)
                if len(items) == 1:
                    raise typer.Exit(err.exit_code) from None
                failures.append(label)
    except KeyboardInterrupt:
        # Downloads keep their .part and extractions restart cleanly: the same command resumes.
        typer.echo("interrupted; run the same command to resume", err=True)
        raise typer.Exit(130) from None
    if failures:
        raise FetchError(f"{len(failures)} of {counted(len(items), 'item')} failed: {', '.join(failures)}")
