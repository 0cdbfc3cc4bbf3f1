"""`repro eval`: evaluate bundled segmentors under their documented test protocols.

The command runs in named steps: choose the runs (`plan_runs`), look at what is on disk and
estimate the cost (`repro.planning.plan`), print the plan, keep the runs that can go, run them one by one
(`_run_one`), and print the summary. Ctrl-C / SIGTERM save the progress and exit 130 / 143.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from dataclasses import asdict, dataclass, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from repro.cli.app import app
from repro.cli.layout import output_width, terminal_lines
from repro.cli.options import (
    DATA_ROOT_OPTION, DATASET_ROOT_OPTION, DOCUMENTED, RESULTS_OPTION, TableOrJson, in_panel, protocol_option,
    with_results_old_name,
)
from repro.cli.progress import EvalProgress
from repro.errors import ReproError
from repro.numerics import PRECISIONS, Precision
from repro.text import counted

if TYPE_CHECKING:  # repro.manifest (pydantic, yaml) loads inside the functions: fast start-up
    from repro.engine.options import EngineOptions
    from repro.manifest import Manifest
    from repro.planning.launch import LaunchOptions

console = Console(stderr=True)


class LauncherChoice(str, Enum):
    local = "local"
    slurm = "slurm"


class VariantChoice(str, Enum):
    """repro.models.VARIANTS (not imported here: the CLI starts without torch)."""

    training_era = "training-era"
    upstream_head = "upstream-head"


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
    protocol: str,
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
        from repro.datasets.roots import dataset_name

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
        if protocol == DOCUMENTED:
            names = [p for p in PROTOCOL_NAMES if p in entry.protocols]
        elif protocol in entry.protocols:
            names = [protocol]
        elif all_models:
            lacking.append(entry.id)
            names = []
        else:
            raise ReproError(f"{entry.id} has no '{protocol}' protocol (it has {', '.join(entry.protocols)}); "
                             f"use --protocol {DOCUMENTED}")
        runs.extend(PlannedRun(entry.id, name) for name in names)
    return runs, lacking


def _say(message: str) -> None:
    """One plain line on stderr, no markup or highlighting: whole in a pipe (scripts grep these),
    wrapped between words on a terminal."""
    for line in terminal_lines(console, message):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _is_rank_zero() -> bool:
    return os.environ.get("RANK", "0") in ("", "0")


def _error_summary(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text and not isinstance(err, ReproError) else (text[0] if text else type(err).__name__)


@contextlib.contextmanager
def _sigterm_raises():
    """SIGTERM raises repro.engine.Terminated (the engine saves its progress and re-raises)."""
    from repro.engine.signals import Terminated

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


def _make_plan(manifest: Manifest, runs, lacking, protocol: str, settings: EngineOptions, everything: bool,
               assume: str | None = None):
    from repro.planning.plan import build_plan, detect_device

    if assume:  # --assume-device: the plan of a device that is not here (repro.planning.budget)
        from repro.planning.budget import assumed_device

        device = assumed_device(assume)
    else:  # without torch: a bad --device is one error line before anything loads
        device = detect_device(settings.device)
    return build_plan(manifest, runs, lacking, protocol, device, settings, everything=everything)


def _check_precisions(text: str, device: str, assume: str | None, dry_run: bool, launched: bool = False) -> list[Precision]:
    """--precision, parsed once into its Precision values (a comma list runs each); tf32 / tf32-all
    are refused (exit 2) before any work where this machine has no TF32 (not checked where the runs
    happen elsewhere: a dry run for an --assume-device, or jobs of a --launcher, whose engine
    checks on its own node)."""
    from repro.numerics import TF32_BY_PRECISION, check_precision, parse_precisions

    if assume and not dry_run:
        raise ReproError("--assume-device plans for another device: add --dry-run", exit_code=2)
    try:
        precisions = parse_precisions(text)
    except ReproError as err:  # a bad option value: a usage error naming the option
        raise typer.BadParameter(str(err), param_hint="'--precision'") from None
    if assume:
        from repro.planning.budget import assumed_device

        assumed_device(assume)  # an unknown name: one line listing the known ones
    elif not launched and any(TF32_BY_PRECISION[p].conv for p in precisions):
        from repro.engine import resolve_device

        for name in precisions:
            check_precision(name, resolve_device(device))
    return precisions


@dataclass(frozen=True)
class _Request:
    """What the command asks beyond the engine's options: which runs, and how to present or
    dispatch them (the plan only, a launcher)."""

    manifest: Manifest
    runs: list[PlannedRun]
    lacking: list[str]
    protocol: str
    everything: bool  # --all without a dataset or shard filter
    checkpoint: Path | None
    dry_run: bool
    fmt: TableOrJson
    assume_device: str | None
    launch: LaunchOptions | None  # --launcher and its options, checked


def _each_precision(request: _Request, settings: EngineOptions, precisions: list[Precision]) -> None:
    """--precision fp32,tf32: the runs once per precision (each writes its own result files); a
    failed run does not stop the next precision, an interrupt does."""
    if len(precisions) == 1:
        _run_request(request, replace(settings, precision=precisions[0]))
        return
    failed = False
    for name in precisions:
        _say(f"precision {name}:")
        try:
            _run_request(request, replace(settings, precision=name))
        except typer.Exit as stop:
            if stop.exit_code in (130, 143):
                raise
            failed = failed or stop.exit_code != 0
    if failed:
        raise typer.Exit(1)


def _run_request(request: _Request, settings: EngineOptions) -> None:
    """Plan, print the plan, then run what is ready here (or hand it to a launcher) and sum up."""
    from repro.engine.kept import kept_line, not_applied

    show = _is_rank_zero()
    with _sigterm_raises():
        plan = _make_plan(request.manifest, request.runs, request.lacking, request.protocol, settings,
                          request.everything, request.assume_device)
        if show and (request.dry_run or _worth_a_plan(plan, request.runs)):
            _print_plan(plan, request.fmt if request.dry_run else TableOrJson.table, budget=bool(request.assume_device))
        if request.dry_run:
            return
        ready = _ready_runs(plan, request.runs)
        if request.launch is not None:  # jobs instead of evaluating here (repro/planning/launch.py)
            from repro.planning.launch import launch_from_cli

            failed = launch_from_cli(ready, request.launch, settings, plan_rows=plan.rows, say=_say)
            raise typer.Exit(1 if failed else 0)
        _hash_ahead(ready[0].model_id, request.checkpoint)  # while torch imports (the plan needs none)
        kept = _kept_runs(plan, ready, settings, request.manifest)
        for path, result in kept.values() if show else ():
            _say(kept_line(path, not_applied(result, settings)))
        todo = [run for run in ready if run not in kept]
        if show and _worth_a_plan(plan, request.runs):
            _warn_if_slow(plan, todo)
        with _removed_if_unused(settings.results_folder):
            ran, failed = _run_all(todo, settings, show)
    if show and ran:  # a rerun of finished runs prints its "kept" lines only
        done = {run: (run, result, note) for run, result, note in ran}
        rows = [done.get(run) or (run, kept[run][1], "kept") for run in ready if run in done or run in kept]
        _print_summary(rows, request.manifest, plan, settings)
    if failed:
        raise typer.Exit(1)


def _worth_a_plan(plan, runs: list[PlannedRun]) -> bool:
    """Several runs, or one estimated long (or unknown): a single short run, or one that cannot
    start, shows only its progress or its one error line."""
    from repro.planning.plan import LONG_RUN_SECONDS

    if runs and all(row.result_on_disk for row in plan.rows if row.protocol is not None):
        return False  # a rerun of finished runs: its "kept: <path>" lines say it all
    if len(runs) != 1:
        return True
    seconds = plan.seconds()
    return bool(plan.ready) and (seconds is None or seconds >= LONG_RUN_SECONDS)


@contextlib.contextmanager
def _removed_if_unused(folder: Path):
    """A results folder this command creates is removed again when no run wrote into it: a run
    that fails at once leaves no empty folder (its run locks are all it would hold)."""
    existed = folder.exists()
    try:
        yield
    finally:
        if not existed and folder.is_dir() and not any(
            p.is_file() and ".locks" not in p.relative_to(folder).parts for p in folder.rglob("*")
        ):
            shutil.rmtree(folder, ignore_errors=True)


def _check_results_folder(results: Path) -> None:
    if results.exists() and not results.is_dir():
        raise ReproError(f"--results {results} is a file, not a folder")


def _print_plan(plan, fmt: TableOrJson = TableOrJson.table, budget: bool = False) -> None:
    """The plan; `budget` (--assume-device): and its time in fp32 and TF32 (repro.planning.budget)."""
    from repro.planning.budget import budget_lines, plan_budget
    from repro.planning.plan import render_plan

    if fmt is TableOrJson.json:
        typer.echo(_plan_json(plan, plan_budget(plan).to_dict() if budget else None))
        return
    out = Console()  # the plan goes to stdout
    for line in render_plan(plan) + (budget_lines(plan) if budget else []):
        for part in terminal_lines(out, line):
            typer.echo(part)


def _plan_json(plan, budget: dict | None = None) -> str:
    """The dry-run plan for scripts: its rows and datasets as they are, plus what the text derives."""
    import json

    rows = [{**asdict(row), "ready": row.ready} for row in plan.rows]
    datasets = [{**asdict(info), "subset": info.subset} for info in plan.datasets.values()]
    data = {"device": {**asdict(plan.device), "label": plan.device.label}, "protocol": plan.protocol,
            "estimated_seconds": plan.seconds(every=True), "runs": rows, "datasets": datasets,
            "fetch_command": plan.fetch_command()}
    if budget is not None:
        data["budget"] = budget
    return json.dumps(data, indent=2, default=lambda o: sorted(o) if isinstance(o, (set, frozenset)) else str(o))


def _ready_runs(plan, runs: list[PlannedRun]) -> list[PlannedRun]:
    """The runs that can go now; an error (one line) when none can."""
    ready = {(row.model_id, row.protocol) for row in plan.ready}
    keep = [run for run in runs if (run.model_id, run.protocol) in ready]
    if keep:
        return keep
    if not runs:
        raise ReproError(f"nothing to evaluate: no selected row has a '{plan.protocol}' protocol")
    blocked = [row for row in plan.rows if row.protocol is not None]
    if len(blocked) == 1:
        raise ReproError(blocked[0].blocked[0])
    shared = [p for p in blocked[0].blocked if "repro fetch" not in p and all(p in row.blocked for row in blocked)]
    if shared:  # e.g. a bad --checkpoint: what fetching would not cure, named first
        raise ReproError(shared[0])
    command = plan.fetch_command()
    if command and all(row.missing for row in blocked):
        raise ReproError(f"nothing to evaluate: {len(blocked)} runs wait for files; fetch them with: {command}")
    raise ReproError(f"nothing to evaluate: none of the {len(blocked)} runs can start (see the plan above)")


def _kept_runs(plan, ready: list[PlannedRun], settings: EngineOptions, manifest: Manifest) -> dict[PlannedRun, tuple]:
    """The ready runs whose result is already on disk, exactly (the checkpoint's sha256, as the
    engine would check) and whose saved predictions, if this run asks for them, are in step: they
    are kept, not run (--force redoes them). The rule is the engine's (repro.engine.kept)."""
    from repro.engine.kept import kept_predictions_missing
    from repro.planning.plan import finished_result

    on_disk = {(row.model_id, row.protocol) for row in plan.ready if row.result_on_disk}
    kept = {}
    for run in ready:
        if (run.model_id, run.protocol) in on_disk:
            entry = manifest.get(run.model_id)
            data = plan.datasets.get((entry.dataset, entry.eval_split))
            path, result, differences = finished_result(run.model_id, run.protocol, settings, data, exact=True)
            if result is not None and not differences and not kept_predictions_missing(result, settings, path):
                kept[run] = (path, result)  # else the engine redoes it, saying why
    return kept


def _warn_if_slow(plan, ready: list[PlannedRun]) -> None:
    """On a CPU, say up front how slow it will be (the plan's estimate) and what a GPU would take."""
    from repro.planning.plan import DeviceInfo, format_duration

    if plan.device.kind != "cpu" or not ready:
        return
    seconds = plan.seconds()
    on_gpu = seconds * plan.device.flops_per_second() / DeviceInfo("cuda", "A100").flops_per_second() if seconds else None
    _say(
        f"note: evaluating on the CPU is slow: {format_duration(seconds)} for {counted(len(ready), 'run')} "
        f"(estimate; about {format_duration(on_gpu)} on an A100 GPU)"
    )


def _label(number: int, count: int, run: PlannedRun) -> str:
    label = f"[{number}/{count}] {run.model_id} {run.protocol}"
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        label += " (rank 0's share)"
    return label


def _run_one(run: PlannedRun, label: str, settings: EngineOptions, show: bool):
    """Evaluate one run; KeyboardInterrupt / Terminated end the command (progress is saved)."""
    from repro.engine import Terminated, evaluate

    view = EvalProgress(label, show, console)
    try:
        with view:
            return evaluate(run.model_id, run.protocol, settings, progress=view,
                            log=view.say if show else None, phase=view.phase, passes=view.passes)
    except KeyboardInterrupt:
        _interrupted(label, show, 130, view.images)
    except Terminated:
        _interrupted(label, show, 143, view.images)


def _interrupted(label: str, show: bool, code: int, images: tuple[int, int] | None) -> None:
    """`images`: (counted, of) at the last image this rank counted (None: none was reached)."""
    if show:
        after = f" after {images[0]} of {counted(images[1], 'image')}" if images else ""
        _say(f"{label}: interrupted{after}; progress saved, run the same command to resume")
    raise typer.Exit(code)


def _report_run(label: str, result, results: Path, started: float) -> None:
    """The outcome of one run and the full path of its result file (nothing when the engine found
    this very evaluation finished: its log said "kept: ..." with the options not applied)."""
    from repro.manifest import load_manifest
    from repro.results.files import filename_of

    if result.finished.timestamp() < started:
        return
    path = results / filename_of(result, load_manifest().get(result.model_id).default_variant)

    if result.status == "server":
        what = (f"no labels for {result.dataset}/{result.split}; wrote the test-server submission "
                f"{result.submission} (upload it to the Cityscapes server for the mIoU)")
    else:
        miou = "n/a" if result.miou_rounded is None else f"{result.miou_rounded:.2f}"
        what = f"mIoU {miou}" + (f" (partial: {_partial_text(result)})" if result.status == "partial" else "")
    _say(f"{label}: {what}; {_perf_text(result)}")
    _say(f"  wrote {path}")


def _partial_text(result) -> str:
    if result.partial_reason == "subset":
        return f"{result.num_images} of the official {result.num_images_official or '?'} images, not compared"
    return f"first {result.num_images} of {result.num_images_total} images, not compared"


def _perf_text(result) -> str:
    from repro.cli.summary import peak_share_text, speed_text
    from repro.planning.plan import format_memory

    parts = [speed_text(result) or "no timed images"]
    if result.flops_per_image:
        parts.append(f"{result.flops_per_image / 1e12:.2f} TFLOP/img")
    if result.peak_flops_fraction is not None:
        parts.append(peak_share_text(result))
    if result.peak_memory_bytes:
        kind = "GPU peak" if result.peak_memory_kind == "cuda-allocated" else "process peak RSS"
        parts.append(f"{kind} {format_memory(result.peak_memory_bytes)}")
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


def _run_all(ready: list[PlannedRun], settings: EngineOptions, show: bool) -> tuple[list, int]:
    """Run each ready run; a failure is noted and the others go on (a single run raises)."""
    import time

    rows, failed = [], 0
    for number, run in enumerate(ready, 1):
        started = time.time()
        label = _label(number, len(ready), run)
        if number < len(ready):
            _hash_ahead(ready[number].model_id, settings.checkpoint)
        try:
            result = _run_one(run, label, settings.for_run(run.model_id, run.protocol, len(ready)), show)
        except typer.Exit:  # interrupted: stop here
            raise
        except Exception as err:  # one broken model must not stop the others
            if len(ready) == 1:
                raise err if isinstance(err, ReproError) else ReproError(f"{run.model_id} [{run.protocol}]: {_error_summary(err)}") from None
            failed += 1
            rows.append((run, None, _error_summary(err)))
            if show:
                _say(f"{label}: failed: {_error_summary(err)}")
            continue
        rows.append((run, result, ""))
        if show:
            _report_run(label, result, settings.results_folder, started)
    return rows, failed


def _print_summary(rows: list[tuple], manifest: Manifest, plan, settings: EngineOptions) -> None:
    from repro.cli.summary import render_summary

    for line in render_summary(rows, manifest, output_width()):  # fits 80 columns, numbers whole
        typer.echo(line)
    typer.echo(f"results: {settings.results_folder}")
    waiting = [row for row in plan.rows if row.protocol is not None and not row.ready]
    if waiting:
        command = plan.fetch_command()
        hint = f"; fetch the missing files with: {command}" if command else " (see the plan above)"
        typer.echo(f"not run: {counted(len(waiting), 'run')}{hint}")


def _check_format(fmt: TableOrJson, dry_run: bool) -> None:
    if fmt is TableOrJson.json and not dry_run:
        raise ReproError("--format json prints the plan: add --dry-run", exit_code=2)


# ---------------------------------------------------------------------------------------------
# The command


@app.command("eval")
def eval_command(
    ids: list[str] = typer.Argument(None, help="Model ids or aliases (see 'repro list')."),
    all_models: bool = typer.Option(False, "--all", help="Evaluate every model of the manifest.", rich_help_panel="What to run"),
    dataset: str = typer.Option(None, "--dataset", help="With --all: only the models of this dataset.", rich_help_panel="What to run"),
    protocol: str = in_panel(protocol_option(documented=True, help="Protocol to run; 'documented': every protocol of the row."), "What to run"),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Checkpoint file instead of the cached download (one model only).", rich_help_panel="Data"),
    data_root: Path = in_panel(DATA_ROOT_OPTION, "Data"),
    dataset_roots: list[str] = in_panel(DATASET_ROOT_OPTION, "Data"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.", rich_help_panel="Engine"),
    limit: int = typer.Option(None, "--limit", min=1, help="Only the first N images (a smoke test; result marked partial).", rich_help_panel="What to run"),
    allow_subset: bool = typer.Option(False, "--allow-subset", help="Accept a dataset folder with fewer images than the official split (result partial, never compared).", rich_help_panel="Data"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (runs, images, passes, time, what is missing) and exit.", rich_help_panel="What to run"),
    fmt: TableOrJson = typer.Option(TableOrJson.table, "--format", help="With --dry-run: the plan as a table or as json.", rich_help_panel="What to run"),
    variant: VariantChoice = typer.Option(None, "--variant", help="Forward to run (default: the row's): training-era (as the checkpoint was trained) or upstream-head (upstream's code now).", rich_help_panel="What to run"),
    precision: str = typer.Option("fp32", "--precision", metavar=f"[{'|'.join(PRECISIONS)}]", help="fp32 as upstream tests (TF32 off); tf32: TF32 convolutions, tf32-all: and matmuls (Ampere+ GPUs; comparable, recorded); bf16/fp16: not comparable. A comma list (fp32,tf32) runs each.", rich_help_panel="Engine"),
    assume_device: str = typer.Option(None, "--assume-device", metavar="NAME", help="With --dry-run: times for a100, h100, h200, l40s, v100 or cpu instead of this machine, in fp32 and TF32.", rich_help_panel="What to run"),
    results: Path = in_panel(with_results_old_name(RESULTS_OPTION), "Output"),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="--no-resume: start interrupted runs over, discarding their saved progress (finished results are kept unless --force).", rich_help_panel="Output"),
    force: bool = typer.Option(False, "--force", help="Redo finished evaluations: their result is replaced, a complete one kept beside it, renamed.", rich_help_panel="Output"),
    shard: str = typer.Option(None, "--shard", help="I/N: only the I-th of N interleaved shares of the models.", rich_help_panel="Cluster"),
    max_batch: int = typer.Option(4, "--max-batch", min=1, help="At most N crops (or images) per forward pass (on a CPU also no more pixels than the image's largest input); lower it if GPU memory is short.", rich_help_panel="Engine"),
    workers: int = typer.Option(None, "--workers", min=0, help="Threads reading images ahead (default: 1 on 1-2 "
                                "cores, else up to 4; 0: none).", rich_help_panel="Engine"),
    save_every: int = typer.Option(200, "--save-every", min=1, help="Images between progress saves.", rich_help_panel="Output"),
    save_every_min: float = typer.Option(5.0, "--save-every-min", min=0.01, help="Minutes between progress saves (whichever comes first).", rich_help_panel="Output"),
    cpu_resize: bool = typer.Option(False, "--cpu-resize", help="Resize outputs on the CPU, exactly as upstream (slower).", rich_help_panel="Engine"),
    save_predictions: Path = typer.Option(None, "--save-predictions", help="Write label PNGs here, named as the dataset names its label files.", rich_help_panel="Output"),
    paint: bool = typer.Option(False, "--paint", help="Also paint/ (the same names), in colour.", rich_help_panel="Output"),
    launcher: LauncherChoice = typer.Option(None, "--launcher", help="One submitit job per (model, protocol), here or on SLURM.", rich_help_panel="Cluster"),
    slurm_partition: str = typer.Option(None, "--slurm-partition", help="SLURM partition of the jobs.", rich_help_panel="Cluster"),
    slurm_gpus: int = typer.Option(1, "--slurm-gpus", min=1, help="At most this many GPUs per job (the cost estimate picks).", rich_help_panel="Cluster"),
    slurm_time_min: int = typer.Option(None, "--slurm-time-min", min=1, help="Minutes per job (default: from the cost estimate).", rich_help_panel="Cluster"),
    slurm_account: str = typer.Option(None, "--slurm-account", help="SLURM account to charge.", rich_help_panel="Cluster"),
    slurm_opts: list[str] = typer.Option(None, "--slurm-opt", help="Extra sbatch option KEY=VALUE, e.g. qos=high (repeatable).", rich_help_panel="Cluster"),
    wait_lock: bool = typer.Option(False, "--wait-lock", help="Another process evaluates the same result (holds its lock): wait for it instead of stopping.", rich_help_panel="Cluster"),
    wait_jobs: bool = typer.Option(False, "--wait-jobs", help="With --launcher slurm: wait for the jobs and print their results (the local launcher always waits).", rich_help_panel="Cluster"),
    wait_both: bool = typer.Option(False, "--wait", hidden=True, help="Old flag: --wait-lock, and with --launcher slurm also --wait-jobs."),
) -> None:
    """Evaluate models with the exact test protocol of their manifest row and write one result per protocol.

    A plan comes first when there are several runs or one estimated to take 5 minutes or more \
(images, forward passes per image, what is missing, an estimated time); --dry-run prints only the plan.

    Times are estimates: forward FLOPs per architecture (counted at 512x512) scaled by each \
protocol's pixels, over an assumed device speed (a share of the GPU's peak, or per CPU thread).
    """
    from repro.datasets.roots import parse_dataset_roots
    from repro.manifest import load_manifest
    from repro.planning.launch import launch_options

    overrides = parse_dataset_roots(dataset_roots)  # checked before any work
    precisions = _check_precisions(precision, device, assume_device, dry_run, launcher is not None)
    _check_format(fmt, dry_run)
    launch = launch_options(launcher.value if launcher else None, partition=slurm_partition, max_gpus=slurm_gpus,
                            time_min=slurm_time_min, account=slurm_account, extra=slurm_opts,
                            wait_jobs=wait_jobs or (wait_both and launcher is LauncherChoice.slurm))
    manifest = load_manifest()
    runs, lacking = plan_runs(manifest, ids, all_models, dataset, protocol, parse_shard(shard))
    if checkpoint is not None and len({r.model_id for r in runs}) > 1:
        raise ReproError("--checkpoint applies to one model; name a single id")
    from repro.engine.options import EngineOptions

    settings = EngineOptions(
        checkpoint=checkpoint, data_root=data_root, dataset_roots=overrides,
        variant=variant.value if variant else None, device=device,
        precision=precisions[0], limit=limit, results=results, resume=resume and not force, force=force,
        wait_lock=wait_lock or wait_both, max_batch=max_batch, workers=workers, save_every=save_every,
        save_every_seconds=save_every_min * 60, resize_on_cpu=cpu_resize, allow_subset=allow_subset,
        save_predictions=save_predictions, paint=paint,
    )
    _check_results_folder(settings.results_folder)
    request = _Request(manifest, runs, lacking, protocol, all_models and not dataset and not shard,
                       checkpoint, dry_run, fmt, assume_device, launch)
    _each_precision(request, settings, precisions)
