"""`repro eval`: evaluate bundled segmentors under their documented test protocols.

The command runs in named steps: choose the runs (`plan_runs`), look at what is on disk and
estimate the cost (`repro.plan`), print the plan, keep the runs that can go, run them one by one
(`_run_one`), and print the summary. Ctrl-C / SIGTERM save the progress and exit 130 / 143.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from repro.cli import app
from repro.cli.options import DATA_ROOT_OPTION, DATASET_ROOT_OPTION
from repro.cli.progress import EvalProgress, format_rate
from repro.errors import ReproError
from repro.paths import dataset_name, dataset_root_overrides, parse_dataset_roots

if TYPE_CHECKING:  # repro.manifest (pydantic, yaml) loads inside the functions: fast start-up
    from repro.manifest import Manifest

console = Console(stderr=True)


class TTAChoice(str, Enum):
    single = "single"
    flip = "flip"
    ms_flip = "ms+flip"
    documented = "documented"


class LauncherChoice(str, Enum):
    local = "local"
    slurm = "slurm"


class VariantChoice(str, Enum):
    """repro.models.VARIANTS (not imported here: the CLI starts without torch)."""

    training_era = "training-era"
    upstream_head = "upstream-head"


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
    """Which (model, protocol) pairs to evaluate, in manifest/argument order, and the ids of the
    rows that lack the named protocol (--all only; the plan lists them).

    'documented' runs every protocol a row has: each documented number (and blank cell) has one.
    Explicit ids must have the named protocol (error otherwise). --shard I/N keeps every N-th
    model starting at the I-th.
    """
    from repro.manifest import PROTOCOL_NAMES

    if ids and all_models:
        raise ReproError("name model ids or use --all, not both")
    if not ids and not all_models:
        raise ReproError("name one or more model ids (see `repro list`) or use --all")
    if dataset and not all_models:
        raise ReproError("--dataset selects rows for --all; drop it when naming ids")
    if all_models:
        wanted = dataset_name(dataset, "--dataset") if dataset else None  # any case; unknown: exit 2 with suggestions
        entries = [e for e in manifest.entries if not wanted or e.dataset == wanted]
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
    runs, lacking = [], []
    for entry in entries:
        if tta == "documented":
            names = [p for p in PROTOCOL_NAMES if p in entry.protocols]
        elif tta in entry.protocols:
            names = [tta]
        elif all_models:
            lacking.append(entry.id)
            names = []
        else:
            raise ReproError(f"{entry.id} has no '{tta}' protocol (it has {', '.join(entry.protocols)}); use --tta documented")
        runs.extend(PlannedRun(entry.id, name) for name in names)
    return runs, lacking


@dataclass(frozen=True)
class RunSettings:
    """The options every run of one command shares (the keyword arguments of repro.evaluate.evaluate)."""

    checkpoint: Path | None
    data_root: Path | None
    device: str
    precision: str
    limit: int | None
    output: Path
    resume: bool
    max_batch: int
    workers: int | None
    save_every: int
    save_every_seconds: float
    resize_on_cpu: bool
    allow_subset: bool
    variant: str | None = None  # None: each row's default forward


def _say(message: str) -> None:
    """One plain line on stderr: no markup, no highlighting, no wrapping (scripts grep these)."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def _is_rank_zero() -> bool:
    return os.environ.get("RANK", "0") in ("", "0")


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text and not isinstance(err, ReproError) else (text[0] if text else type(err).__name__)


@contextlib.contextmanager
def _sigterm_raises():
    """SIGTERM raises repro.evaluate.Terminated (the engine saves its progress and re-raises)."""
    from repro.evaluate import Terminated

    def handle(signum, _frame):
        raise Terminated(f"terminated by signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    except Terminated:  # outside a run (planning, launching, between runs): no traceback
        raise typer.Exit(143) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------------------
# Steps of the command


def _make_plan(manifest: Manifest, runs, lacking, tta: str, settings: RunSettings, everything: bool):
    from repro.evaluate import resolve_device
    from repro.plan import build_plan, detect_device

    resolve_device(settings.device)  # a bad --device is one error line before anything else
    return build_plan(
        manifest, runs, lacking, tta, detect_device(settings.device), checkpoint=settings.checkpoint,
        data_root=settings.data_root, limit=settings.limit, allow_subset=settings.allow_subset,
        output=settings.output, resume=settings.resume, everything=everything, variant=settings.variant,
        precision=settings.precision,
    )


def _worth_a_plan(plan, runs: list[PlannedRun]) -> bool:
    """Several runs, or one estimated long (or unknown): a single short run, or one that cannot
    start, shows only its progress or its one error line."""
    from repro.plan import LONG_RUN_SECONDS

    if len(runs) != 1:
        return True
    seconds = plan.seconds()
    return bool(plan.ready) and (seconds is None or seconds >= LONG_RUN_SECONDS)


def _check_output(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise ReproError(f"--output {output} is a file, not a folder")


def _print_plan(plan) -> None:
    from repro.plan import render_plan

    for line in render_plan(plan):
        typer.echo(line)


def _ready_runs(plan, runs: list[PlannedRun]) -> list[PlannedRun]:
    """The runs that can go now; an error (one line) when none can."""
    ready = {(row.model_id, row.protocol) for row in plan.ready}
    keep = [run for run in runs if (run.model_id, run.protocol) in ready]
    if keep:
        return keep
    if not runs:
        raise ReproError(f"nothing to evaluate: no selected row has a '{plan.tta}' protocol")
    blocked = [row for row in plan.rows if row.protocol is not None]
    if len(blocked) == 1:
        raise ReproError(blocked[0].blocked[0])
    command = plan.fetch_command()
    if command and all(row.missing for row in blocked):
        raise ReproError(f"nothing to evaluate: {len(blocked)} runs wait for files; fetch them with: {command}")
    raise ReproError(f"nothing to evaluate: none of the {len(blocked)} runs can start (see the plan above)")


def _warn_if_slow(plan, ready: list[PlannedRun]) -> None:
    """On a CPU, say up front how slow it will be (the plan's estimate) and what a GPU would take."""
    from repro.plan import DeviceInfo, format_duration

    if plan.device.kind != "cpu":
        return
    seconds = plan.seconds()
    on_gpu = seconds * plan.device.flops_per_second() / DeviceInfo("cuda", "A100").flops_per_second() if seconds else None
    _say(
        f"note: evaluating on the CPU is slow: {format_duration(seconds)} for {len(ready)} run(s) "
        f"(estimate; about {format_duration(on_gpu)} on an A100 GPU)"
    )


def _label(number: int, count: int, run: PlannedRun) -> str:
    label = f"[{number}/{count}] {run.model_id} {run.protocol}"
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        label += " (rank 0's share)"
    return label


def _run_one(run: PlannedRun, label: str, settings: RunSettings, show: bool):
    """Evaluate one run; KeyboardInterrupt / Terminated end the command (progress is saved)."""
    from repro.evaluate import Terminated, evaluate

    try:
        with EvalProgress(label, show, console) as view:
            return evaluate(run.model_id, run.protocol, **asdict(settings), progress=view,
                            log=view.say if show else None, phase=view.phase)
    except KeyboardInterrupt:
        _interrupted(label, show, 130)
    except Terminated:
        _interrupted(label, show, 143)


def _interrupted(label: str, show: bool, code: int) -> None:
    if show:
        _say(f"{label}: interrupted; progress saved, run the same command to resume")
    raise typer.Exit(code)


def _report_run(label: str, result, output: Path) -> None:
    """The outcome of one run and the full path of its result file."""
    from repro.results import result_filename

    if result.status == "server":
        what = (f"no labels for {result.dataset}/{result.split}; wrote the test-server submission "
                f"{result.submission} (upload it to the Cityscapes server for the mIoU)")
    else:
        miou = "n/a" if result.miou_rounded is None else f"{result.miou_rounded:.2f}"
        what = f"mIoU {miou}" + (f" (partial: {_partial_text(result)})" if result.status == "partial" else "")
    _say(f"{label}: {what}; {_perf_text(result)}")
    from repro.manifest import load_manifest

    default = load_manifest().get(result.model_id).default_variant
    _say(f"  wrote {(output / result_filename(result.model_id, result.protocol, result.variant, default)).resolve()}")


def _partial_text(result) -> str:
    if result.partial_reason == "subset":
        return f"{result.num_images} of the official {result.num_images_official or '?'} images, not compared"
    return f"first {result.num_images} of {result.num_images_total} images, not compared"


def _speed(result) -> str:
    """'2.31 img/s' or '4.2 s/img' from the result's timing ('' when nothing was timed)."""
    if result.seconds_per_image:
        return format_rate(1, result.seconds_per_image)
    return format_rate(round(result.images_per_second * result.seconds), result.seconds) if result.images_per_second else ""


def _perf_text(result) -> str:
    parts = [_speed(result) or "no timed images"]
    if result.flops_per_image:
        parts.append(f"{result.flops_per_image / 1e12:.2f} TFLOP/img")
    if result.peak_flops_fraction is not None:
        parts.append(f"{result.peak_flops_fraction:.0%} of fp32 peak")
    if result.peak_memory_bytes:
        kind = "GPU peak" if result.peak_memory_kind == "cuda-allocated" else "process peak RSS"
        parts.append(f"{kind} {result.peak_memory_bytes / 2**30:.1f} GiB")
    return ", ".join(parts)


def _hash_ahead(model_id: str, checkpoint: Path | None) -> None:
    """Start hashing a run's checkpoint in a thread; the engine waits for that hash instead of
    computing it. For the first run this overlaps torch's import, for the next ones the run
    before (R-50: 0.35 s here; Swin-L's 0.8 GB about 1.5 s)."""
    from repro.fetch import resolve_checkpoint
    from repro.fetch.download import start_file_digest

    try:
        start_file_digest(resolve_checkpoint(model_id, checkpoint))
    except ReproError:  # not there: the plan or the engine says so
        return


def _run_all(ready: list[PlannedRun], settings: RunSettings, show: bool) -> tuple[list, int]:
    """Run each ready run; a failure is noted and the others go on (a single run raises)."""
    rows, failed = [], 0
    for number, run in enumerate(ready, 1):
        label = _label(number, len(ready), run)
        if number < len(ready):
            _hash_ahead(ready[number].model_id, settings.checkpoint)
        try:
            result = _run_one(run, label, settings, show)
        except typer.Exit:  # interrupted: stop here
            raise
        except Exception as err:  # one broken model must not stop the others
            if len(ready) == 1:
                raise err if isinstance(err, ReproError) else ReproError(f"{run.model_id} [{run.protocol}]: {_short(err)}") from None
            failed += 1
            rows.append((run, None, _short(err)))
            if show:
                _say(f"{label}: failed: {_short(err)}")
            continue
        rows.append((run, result, ""))
        if show:
            _report_run(label, result, settings.output)
    return rows, failed


def _summary(rows: list[tuple], manifest: Manifest) -> Table:
    table = Table(title="evaluation summary")
    numeric = ("mIoU", "documented", "delta", "images", "speed")
    for column in ("model", "protocol", "status", *numeric, "note"):
        table.add_column(column, justify="right" if column in numeric else "left",
                         no_wrap=column in ("model", "protocol", "status"))
    for run, result, note in rows:
        documented = manifest.get(run.model_id).documented.get(run.protocol)
        if result is None:
            table.add_row(run.model_id, run.protocol, "failed", "", _fmt(documented), "", "", "", note)
            continue
        comparable = result.status == "complete" and result.precision == "fp32"
        measured = result.miou
        delta = measured - documented if comparable and measured is not None and documented is not None else None
        note = note or ("submission: " + result.submission if result.submission else "")
        if result.status == "partial":
            note = (note + "; " if note else "") + f"partial ({result.partial_reason or 'limit'}), not compared"
        if result.precision != "fp32":
            note = (note + "; " if note else "") + f"{result.precision}, not comparable"
        table.add_row(
            run.model_id, run.protocol, result.status, _fmt(measured), _fmt(documented),
            "" if delta is None else f"{delta:+.2f}", f"{result.num_images}/{result.num_images_total}",
            _speed(result), note,
        )
    return table


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _print_summary(rows: list[tuple], manifest: Manifest, plan, settings: RunSettings) -> None:
    out = Console(file=sys.stdout)
    if not out.is_terminal:  # logs and CI: do not squeeze the table into 80 columns
        out = Console(file=sys.stdout, width=200)
    out.print(_summary(rows, manifest))
    typer.echo(f"results: {settings.output.resolve()}")
    waiting = [row for row in plan.rows if row.protocol is not None and not row.ready]
    if waiting:
        command = plan.fetch_command()
        hint = f"; fetch the missing files with: {command}" if command else " (see the plan above)"
        typer.echo(f"not run: {len(waiting)} run(s){hint}")


# ---------------------------------------------------------------------------------------------
# The command


@app.command("eval")
def eval_command(
    ids: list[str] = typer.Argument(None, help="Model ids or aliases (see 'repro list')."),
    all_models: bool = typer.Option(False, "--all", help="Evaluate every model of the manifest."),
    dataset: str = typer.Option(None, "--dataset", help="With --all: only the models of this dataset."),
    tta: TTAChoice = typer.Option(TTAChoice.documented, "--tta", help="Protocol to run; 'documented' (default) runs every protocol the manifest row documents."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Checkpoint file to use instead of the cached download (one model only)."),
    data_root: Path = DATA_ROOT_OPTION,
    dataset_roots: list[str] = DATASET_ROOT_OPTION,
    limit: int = typer.Option(None, "--limit", min=1, help="Evaluate only the first N images (smoke test; result marked partial)."),
    allow_subset: bool = typer.Option(False, "--allow-subset", help="Evaluate a dataset folder with fewer images than the official split (result marked partial, never compared)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (runs, images, passes, estimated time, what is missing) and exit."),
    variant: VariantChoice = typer.Option(None, "--variant", help="Forward to run: training-era (the default where it differs: the network the checkpoint was trained with) or upstream-head (upstream's current code)."),
    precision: PrecisionChoice = typer.Option(PrecisionChoice.fp32, "--precision", help="fp32 as upstream (TF32 off); bf16/fp16 autocast results are marked not comparable."),
    output: Path = typer.Option(None, "--output", help="Folder for the result files (default: $REPRO_RESULTS, else <cache>/results)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Resume interrupted runs and keep finished ones."),
    force: bool = typer.Option(False, "--force", help="Redo finished evaluations (same as --no-resume)."),
    shard: str = typer.Option(None, "--shard", help="I/N: evaluate only the I-th of N interleaved shares of the models (1-based)."),
    max_batch: int = typer.Option(4, "--max-batch", min=1, help="Crops (or images) per forward pass; lower it if GPU memory is short."),
    workers: int = typer.Option(None, "--workers", min=0, help="Data-loading threads reading ahead (default: 1 "
                                "on 1-2 cores, else up to 4; 0: read in the main thread)."),
    save_every: int = typer.Option(200, "--save-every", min=1, help="Images between progress saves."),
    save_every_min: float = typer.Option(5.0, "--save-every-min", min=0.01, help="Minutes between progress saves (whichever comes first)."),
    cpu_resize: bool = typer.Option(False, "--cpu-resize", help="Resize outputs to the original size on the CPU, exactly as upstream (slower)."),
    launcher: LauncherChoice = typer.Option(None, "--launcher", help="One submitit job per (model, protocol): 'local' (this machine) or 'slurm'."),
    slurm_partition: str = typer.Option(None, "--slurm-partition", help="SLURM partition of the jobs."),
    slurm_gpus: int = typer.Option(1, "--slurm-gpus", min=1, help="At most this many GPUs per job; the cost estimate picks how many."),
    slurm_time_min: int = typer.Option(None, "--slurm-time-min", min=1, help="Time limit per job in minutes (default: from the cost estimate)."),
    slurm_account: str = typer.Option(None, "--slurm-account", help="SLURM account to charge."),
    slurm_opts: list[str] = typer.Option(None, "--slurm-opt", help="Extra sbatch option KEY=VALUE (repeatable), e.g. qos=high."),
    wait: bool = typer.Option(False, "--wait", help="With --launcher slurm: wait for the jobs and print their results."),
) -> None:
    """Evaluate models with the exact test protocol of their manifest row and write one result per protocol.

    A plan comes first: per run the images, forward passes per image (scales x flips x slide \
windows; '~' where it depends on the image size), what is not fetched yet, and an estimated time \
(forward FLOPs from a per-architecture table scaled by pixels, over an assumed device speed: an \
estimate, not a measurement).
    """
    from repro.manifest import load_manifest
    from repro.paths import results_dir

    overrides = parse_dataset_roots(dataset_roots)  # checked before any work
    slurm = dict(partition=slurm_partition, max_gpus=slurm_gpus, time_min=slurm_time_min, account=slurm_account,
                 extra=slurm_opts, wait=wait)
    if launcher is not None or any(slurm[k] for k in ("partition", "account", "extra", "time_min")):
        from repro.launch import check_cli_options

        check_cli_options(launcher.value if launcher else None, slurm)
    manifest = load_manifest()
    runs, lacking = plan_runs(manifest, ids, all_models, dataset, tta.value, parse_shard(shard))
    if checkpoint is not None and len({r.model_id for r in runs}) > 1:
        raise ReproError("--checkpoint applies to one model; name a single id")
    settings = RunSettings(
        checkpoint=checkpoint, data_root=data_root, device=device, precision=precision.value, limit=limit,
        output=results_dir(output), resume=resume and not force, max_batch=max_batch, workers=workers,
        save_every=save_every, save_every_seconds=save_every_min * 60, resize_on_cpu=cpu_resize,
        allow_subset=allow_subset, variant=variant.value if variant else None,
    )
    _check_output(settings.output)
    show = _is_rank_zero()
    if runs and not dry_run and launcher is None:
        _hash_ahead(runs[0].model_id, checkpoint)  # while torch imports (the plan imports it)
    with dataset_root_overrides(overrides), _sigterm_raises():
        plan = _make_plan(manifest, runs, lacking, tta.value, settings, all_models and not dataset and not shard)
        if show and (dry_run or _worth_a_plan(plan, runs)):
            _print_plan(plan)
        if dry_run:
            return
        ready = _ready_runs(plan, runs)
        if launcher is not None:  # jobs instead of evaluating here (repro/launch.py)
            from repro.launch import launch_from_cli

            failed = launch_from_cli(ready, launcher.value, asdict(settings), slurm, dataset_roots=overrides,
                                     plan_rows=plan.rows, say=_say)
            raise typer.Exit(1 if failed else 0)
        if show and _worth_a_plan(plan, runs):
            _warn_if_slow(plan, ready)
        rows, failed = _run_all(ready, settings, show)
    if show:
        _print_summary(rows, manifest, plan, settings)
    if failed:
        raise typer.Exit(1)
