"""`repro eval`: evaluate bundled segmentors under their documented test protocols."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from repro.cli import app
from repro.errors import ReproError
from repro.manifest import PROTOCOL_NAMES, Manifest, load_manifest

console = Console(stderr=True)


class TTAChoice(str, Enum):
    single = "single"
    flip = "flip"
    ms_flip = "ms+flip"
    documented = "documented"


class PrecisionChoice(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


@dataclass(frozen=True)
class PlannedRun:
    model_id: str
    protocol: str


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'I/N' (1-based, 1 <= I <= N) -> (I, N)."""
    if text is None:
        return None
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ReproError(f"--shard takes I/N (e.g. 1/4), not '{text}'") from None
    if count < 1 or not 1 <= index <= count:
        raise ReproError(f"--shard {text}: need 1 <= I <= N")
    return index, count


def plan_runs(
    manifest: Manifest,
    ids: list[str] | None,
    all_models: bool,
    dataset: str | None,
    tta: str,
    shard: tuple[int, int] | None = None,
) -> tuple[list[PlannedRun], list[str]]:
    """Which (model, protocol) pairs to evaluate, in manifest/argument order, plus notes to show.

    Explicit ids must have the named protocol (error otherwise); with --all a row without it is
    skipped with a note. --shard I/N keeps every N-th model starting at the I-th.
    """
    if ids and all_models:
        raise ReproError("name model ids or use --all, not both")
    if not ids and not all_models:
        raise ReproError("name one or more model ids (see `repro list`) or use --all")
    if dataset and not all_models:
        raise ReproError("--dataset selects rows for --all; drop it when naming ids")
    if all_models:
        entries = [e for e in manifest.entries if not dataset or e.dataset == dataset.lower()]
        if not entries:
            raise ReproError(f"no model evaluates on dataset '{dataset}'")
    else:
        entries = []
        for name in ids or []:
            entry = manifest.get(name)  # UnknownModelError (exit 2) with suggestions
            if entry not in entries:
                entries.append(entry)
    if shard is not None:
        index, count = shard
        entries = entries[index - 1 :: count]
    runs, notes = [], []
    for entry in entries:
        if tta == "documented":
            names = [p for p in PROTOCOL_NAMES if p in entry.protocols]
        elif tta in entry.protocols:
            names = [tta]
        elif all_models:
            notes.append(f"skipped {entry.id}: no '{tta}' protocol (it has {', '.join(entry.protocols)})")
            names = []
        else:
            raise ReproError(f"{entry.id} has no '{tta}' protocol (it has {', '.join(entry.protocols)}); use --tta documented")
        runs.extend(PlannedRun(entry.id, name) for name in names)
    return runs, notes


class _ProgressView:
    """Per-run progress: a rich bar on a terminal, a line every ~30 s otherwise; rank 0 only."""

    def __init__(self, label: str, enabled: bool):
        self.label = label
        self.enabled = enabled
        self.interactive = enabled and console.is_terminal
        self.progress: Progress | None = None
        self.task = None
        self.first_done: int | None = None
        self.started = time.perf_counter()
        self.last_line = 0.0

    def __enter__(self):
        if self.interactive:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=console, transient=True,
            )
            self.progress.__enter__()
            self.task = self.progress.add_task(self.label, total=None, rate="")
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)
        return False

    def _rate(self, done: int) -> float:
        elapsed = time.perf_counter() - self.started
        return (done - (self.first_done or 0)) / elapsed if elapsed > 0 else 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.first_done is None:
            self.first_done, self.started = done, time.perf_counter()
        rate = self._rate(done)
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total, rate=f"{rate:.2f} img/s")
            return
        now = time.perf_counter()
        if done in (self.first_done, total) or now - self.last_line >= 30:
            self.last_line = now
            eta = (total - done) / rate if rate > 0 else float("nan")
            eta_text = f", eta {eta / 60:.1f} min" if eta == eta else ""
            _say(f"{self.label}: {done}/{total} images, {rate:.2f} img/s{eta_text}")


def _say(message: str) -> None:
    """One plain line on stderr: no markup, no highlighting, no wrapping (scripts grep these)."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def _is_rank_zero() -> bool:
    return os.environ.get("RANK", "0") in ("", "0")


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text and not isinstance(err, ReproError) else (text[0] if text else type(err).__name__)


def _summary(rows: list[tuple], manifest: Manifest) -> Table:
    table = Table(title="evaluation summary")
    for column in ("model", "protocol", "status", "mIoU", "documented", "delta", "images", "img/s", "note"):
        table.add_column(column, justify="right" if column in ("mIoU", "documented", "delta", "images", "img/s") else "left",
                         no_wrap=column in ("model", "protocol", "status"))
    for run, result, note in rows:
        documented = manifest.get(run.model_id).documented.get(run.protocol)
        if result is None:
            table.add_row(run.model_id, run.protocol, "failed", "", _fmt(documented), "", "", "", "see the error above")
            continue
        measured = result.miou
        delta = measured - documented if measured is not None and documented is not None else None
        note = note or ("submission: " + result.submission if result.submission else "")
        if result.precision != "fp32":
            note = (note + "; " if note else "") + f"{result.precision}, not comparable"
        table.add_row(
            run.model_id, run.protocol, result.status, _fmt(measured), _fmt(documented),
            "" if delta is None else f"{delta:+.2f}", f"{result.num_images}/{result.num_images_total}",
            f"{result.images_per_second:.2f}", note,
        )
    return table


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


@app.command("eval")
def eval_command(
    ids: list[str] = typer.Argument(None, help="Model ids or aliases (see 'repro list')."),
    all_models: bool = typer.Option(False, "--all", help="Evaluate every model of the manifest."),
    dataset: str = typer.Option(None, "--dataset", help="With --all: only the models of this dataset."),
    tta: TTAChoice = typer.Option(TTAChoice.documented, "--tta", help="Protocol to run; 'documented' runs every protocol the manifest row has."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Checkpoint file to use instead of the cached download (one model only)."),
    data_root: Path = typer.Option(None, "--data-root", help="Folder holding the dataset folders (default $REPRO_DATA or the cache)."),
    limit: int = typer.Option(None, "--limit", min=1, help="Evaluate only the first N images (smoke test; result marked partial)."),
    precision: PrecisionChoice = typer.Option(PrecisionChoice.fp32, "--precision", help="fp32 as upstream (TF32 off); bf16/fp16 autocast results are marked not comparable."),
    output: Path = typer.Option(Path("results"), "--output", help="Folder for the result files."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Resume interrupted runs and keep finished ones."),
    force: bool = typer.Option(False, "--force", help="Redo finished evaluations (same as --no-resume)."),
    shard: str = typer.Option(None, "--shard", help="I/N: evaluate only the I-th of N interleaved shares of the models (1-based)."),
    max_batch: int = typer.Option(4, "--max-batch", min=1, help="Crops (or images) per forward pass; lower it if GPU memory is short."),
    workers: int = typer.Option(None, "--workers", min=0, help="Data-loading processes (default: up to 4)."),
    save_every: int = typer.Option(200, "--save-every", min=1, help="Images between progress saves."),
    cpu_resize: bool = typer.Option(False, "--cpu-resize", help="Resize outputs to the original size on the CPU, exactly as upstream (slower)."),
) -> None:
    """Evaluate models with the exact test protocol of their manifest row and write one result per protocol."""
    from repro.evaluate import evaluate

    manifest = load_manifest()
    runs, notes = plan_runs(manifest, ids, all_models, dataset, tta.value, parse_shard(shard))
    if checkpoint is not None and len({r.model_id for r in runs}) > 1:
        raise ReproError("--checkpoint applies to one model; name a single id")
    show = _is_rank_zero()
    for note in notes:
        if show:
            _say(f"note: {note}")
    if not runs:
        if show:
            _say("nothing to evaluate")
        return
    single = len(runs) == 1
    rows, failed = [], 0
    for number, run in enumerate(runs, 1):
        label = f"[{number}/{len(runs)}] {run.model_id} {run.protocol}"
        if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            label += " (rank 0's share)"
        try:
            with _ProgressView(label, show) as view:
                result = evaluate(
                    run.model_id, run.protocol, checkpoint=checkpoint, data_root=data_root, device=device,
                    precision=precision.value, limit=limit, output=output, resume=resume and not force,
                    max_batch=max_batch, workers=workers, save_every=save_every, resize_on_cpu=cpu_resize,
                    progress=view, log=_say if show else None,
                )
        except KeyboardInterrupt:
            if show:
                _say(f"{label}: interrupted; progress saved, rerun the same command to resume")
            raise typer.Exit(130) from None
        except ReproError as err:
            if single:
                raise
            failed += 1
            rows.append((run, None, str(err)))
            if show:
                _say(f"{label}: failed: {err}")
            continue
        except Exception as err:  # one broken model must not stop the others
            if single:
                raise ReproError(f"{run.model_id} [{run.protocol}]: {_short(err)}") from None
            failed += 1
            rows.append((run, None, _short(err)))
            if show:
                _say(f"{label}: failed: {_short(err)}")
            continue
        rows.append((run, result, ""))
        if show:
            if result.status == "server":
                _say(
                    f"{label}: no labels for {result.dataset}/{result.split}; wrote the test-server submission "
                    f"{result.submission} (upload it to the Cityscapes server for the mIoU)"
                )
            else:
                partial = f" (partial: first {result.num_images} images)" if result.status == "partial" else ""
                miou = "n/a" if result.miou_rounded is None else f"{result.miou_rounded:.2f}"
                _say(f"{label}: mIoU {miou}{partial}")
    if show:
        out = Console(file=sys.stdout)
        if not out.is_terminal:  # logs and CI: do not squeeze the table into 80 columns
            out = Console(file=sys.stdout, width=200)
        out.print(_summary(rows, manifest))
    if failed:
        raise typer.Exit(1)
