"""`run_job` in named steps: check the options, the ranks, the device and the results folder, the
extent of the run (subset check against `DatasetSpec.splits`), the result file and its lock, a
finished result (kept), the resume state and the sinks (restored all or nothing), the loop
(`evaluate_share`), the merge over ranks, the result. `evaluate` is the public entry point: a
manifest row, a protocol and one EngineOptions."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from repro.engine.devices import Collective, Ranks, resolve_device, setup_distributed
from repro.engine.job import EngineOptions, EvalJob, build_job, dataset_fingerprint
from repro.engine.kept import kept_line, kept_predictions_missing, not_applied
from repro.engine.loop import PassCallback, PhaseCallback, ProgressCallback, Watchers, combined_batching, evaluate_share
from repro.engine.progress import Session, State, drop_state, fingerprint_of, progress_path, run_conditions, saved_state
from repro.engine.record import (
    Extent, conditions, make_result, performance, result_path, run_environment,
)
from repro.engine.sinks import Finished, MetricSink, SubmissionSink
from repro.errors import DatasetError, ReproError
from repro.fileio import write_beside
from repro.numerics import arithmetic, check_precision
from repro.results.files import EvalResult, publish_result
from repro.results.freshness import result_on_disk
from repro.text import counted

LogCallback = Callable[[str], None]


@dataclass
class Run:
    """One rank's run of one job, once its steps have resolved it."""

    job: EvalJob
    options: EngineOptions
    ranks: Ranks
    device: torch.device
    results: Path  # the results folder
    extent: Extent
    result_file: Path
    fingerprint: str | None  # of the dataset files

    @property
    def share(self) -> list[int]:
        return list(range(self.ranks.rank, self.extent.count, self.ranks.world_size))  # strided, no padding


def run_job(job: EvalJob, options: EngineOptions = EngineOptions(), *, progress: ProgressCallback | None = None,
            log: LogCallback | None = None, phase: PhaseCallback | None = None,
            passes: PassCallback | None = None) -> EvalResult:
    """Evaluate `job`; returns (and on rank 0 writes) the result and its evidence sidecar.

    SIGINT / SIGTERM during the images save the progress and raise KeyboardInterrupt / Terminated.
    """
    run = prepare_run(job, options)
    say = _prefixed(job, log)
    with _lock(run, say):
        on_disk = result_on_disk(run.result_file, conditions(job, options, run.extent, run.fingerprint), exact=True)
        if on_disk.finished and not options.force:  # an identical evaluation is not redone (every rank agrees)
            missing = kept_predictions_missing(on_disk.result, options, run.result_file)
            if not missing:
                return _kept(run, on_disk.result, say)
            say(f"the saved predictions of the finished result are out of step ({counted(missing, 'PNG')} missing, "
                "overwritten or left over); evaluating again")
        refused = on_disk.refusal(options.force)
        if refused:
            raise ReproError(refused)
        return _evaluate(run, Watchers(progress, phase, passes, say))


def _kept(run: Run, kept: EvalResult, say: LogCallback) -> EvalResult:
    """The finished result, with the options this run was not computed with named."""
    say(kept_line(run.result_file, not_applied(kept, run.options)))
    return kept


def prepare_run(job: EvalJob, options: EngineOptions) -> Run:
    ranks = setup_distributed(options.device)
    device = resolve_device(options.device, ranks.local_rank)
    check_precision(options.precision, device)
    results = _prepare_results_folder(options.results_folder)
    total = len(job.dataset)
    if total == 0:
        raise DatasetError(f"the {job.dataset_name} {job.split} split under {job.data_root} has no images")
    extent = Extent(total, min(total, options.limit) if options.limit else total, _is_subset(job, options))
    return Run(job, options, ranks, device, results, extent, result_path(job, options, results, extent),
               dataset_fingerprint(job.dataset, job.data_root))


def _prefixed(job: EvalJob, log: LogCallback | None) -> LogCallback:
    say = log or (lambda message: None)
    return lambda message: say(f"{job.model_id} [{job.protocol_name}]: {message}")


def _lock(run: Run, say: LogCallback):
    """One process per result at a time (rank 0 holds it for its ranks)."""
    if run.ranks.rank != 0:
        return contextlib.nullcontext()
    from repro.engine.lock import run_lock

    return run_lock(run.results, run.result_file.stem, wait=run.options.wait_lock, note=say)


def _evaluate(run: Run, watchers: Watchers) -> EvalResult:
    job, ranks, share, say = run.job, run.ranks, run.share, watchers.log
    state_file = progress_path(run.results, run.result_file.stem, ranks)
    now = run_conditions(job, run.options, ranks, [job.dataset.ids[i] for i in share], run.device, run.fingerprint)
    collective = Collective(ranks)
    state, sinks = _resume(run, now, state_file, collective, say)
    session = Session(state, sinks, state_file, run.options, run.device)
    done_before, resumed = state.done, state.done > 0
    with arithmetic(run.options.precision, run.device):
        if state.done < len(share):
            evaluate_share(job, run.options, run.device, share, session, watchers)
        session.save()
    result = _merge_and_record(run, session, collective)
    drop_state(state_file)
    if state.done == done_before and resumed:
        say("all images were already counted; result written")
    return result


def _resume(run: Run, conditions_now: dict[str, Any], state_file: Path, collective: Collective,
            say: LogCallback) -> tuple[State, list[Any]]:
    """The saved state with every sink restored from it, or a fresh state with fresh sinks: never
    a mix. Every rank resumes, or all start over (their sinks share folders)."""
    state = saved_state(conditions_now, run.options.resume, state_file, say)
    sinks = None
    if all(collective.gather(state is not None)):
        sinks = make_sinks(run, collective, fresh=False)
        why = _restore(sinks, state)
        if why:
            say(f"ignoring saved progress: {why}; starting over")
        if not all(collective.gather(why is None)):
            sinks = None
    elif state is not None:
        say("another rank has no saved progress; starting over")
    if sinks is None:
        state = State(fingerprint_of(conditions_now), conditions_now)
        return state, make_sinks(run, collective, fresh=True)
    if state.done:
        say(f"resuming after {state.done} of {len(run.share)} images")
    return state, sinks


def make_sinks(run: Run, collective: Collective, fresh: bool) -> list[Any]:
    """The metric and its evidence (first), the server submission, and saved predictions."""
    job = run.job
    sinks: list[Any] = [MetricSink(job.class_names, run.device, labelled=not job.server)]
    if job.server:
        sinks.append(SubmissionSink(run.results, run.result_file.stem, collective, fresh))
    if run.options.save_predictions is not None:
        from repro.engine.predictions import PredictionSink

        sinks.append(PredictionSink(job, run.options, collective, run.fingerprint))
    return sinks


# How a sink reads in the line that says why its saved part is not used.
_SINK_WORDS = {"metric": "the metric", "submission": "the submission PNGs", "predictions": "--save-predictions"}


def _restore(sinks: list[Any], state: State) -> str | None:
    """Every sink takes back its saved part (None), or why the state does not fit this run."""
    for sink in sinks:
        saved = state.sinks.get(sink.name)
        words = _SINK_WORDS.get(sink.name, sink.name)
        if not isinstance(saved, dict) or "state" not in saved:
            return f"{words} was not part of the interrupted run (its {counted(state.done, 'counted image')} would lack it)"
        if saved.get("settings") != sink.settings():
            return f"{words} had other settings then ({saved.get('settings')})"
        ids = saved["state"].get("ids") if isinstance(saved["state"], dict) else None
        if not isinstance(ids, list) or len(ids) != state.done:  # every sink holds exactly the counted images
            return f"{words} holds {counted(len(ids) if isinstance(ids, list) else 0, 'image')}, the counter {state.done}"
    try:
        for sink in sinks:
            sink.restore(state.sinks[sink.name]["state"])
    except (KeyError, ValueError, TypeError, RuntimeError, AttributeError) as err:
        return f"it does not fit this run ({err})"
    return None


def _merge_and_record(run: Run, session: Session, collective: Collective) -> EvalResult:
    """Every sink merges the ranks' parts; rank 0 finishes them and publishes the result with its
    evidence; every rank learns whether that worked (a failure keeps every rank's progress)."""
    state = session.state
    counts = collective.gather((state.done, state.seconds, state.batching))
    evaluated, seconds = sum(c[0] for c in counts), max(c[1] for c in counts)  # wall time: slowest rank
    batching = combined_batching([c[2] for c in counts])
    for sink in session.sinks:
        sink.merge(collective)
    timing = {"num_images": evaluated, "seconds": seconds,
              **performance(state, run.device, run.ranks, evaluated, seconds, run.options.precision)}
    failure, fields = None, {}
    try:
        if run.ranks.rank == 0:
            finished = Finished(run.result_file, run.extent.count)
            for sink in session.sinks:
                fields.update(sink.finish(finished))
        result = make_result(run.job, run.options, run.extent, timing, fields, run.fingerprint, state.started,
                             run_environment(run.options, run.device, run.ranks, batching))
        if run.ranks.rank == 0:
            publish_result(result, run.result_file, session.sinks[0].evidence().to_bytes())
    except OSError as err:
        failure = (f"cannot write the result {run.result_file}: {err.strerror or err}; every image is counted and "
                   "saved: fix that and run the same command to write it")
    except ReproError as err:
        failure = str(err)
    written = collective.gather(failure)[0]
    if failure is not None or written is not None:
        raise ReproError(failure or f"rank 0 could not write the result ({written})")
    return result


def _prepare_results_folder(folder: Path) -> Path:
    """The results folder, created and written to now: fail before hours of work, not at the
    first save."""
    if folder.exists() and not folder.is_dir():
        raise ReproError(f"--results {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_beside(folder / "write-check", b"").unlink()
    except OSError as err:
        raise ReproError(f"cannot write to the results folder {folder}: {err.strerror or err}; "
                         "choose another with --results") from None
    return folder


def _is_subset(job: EvalJob, options: EngineOptions) -> bool:
    """Whether the folder holds fewer than the official split (the datasets' one rule,
    `split_size`); refused unless allowed or --limit."""
    from repro.datasets.base import split_size

    size = split_size(job.dataset, job.official_count, job.count_unit)
    if not size.subset:
        return False
    if not options.allow_subset and options.limit is None:
        raise DatasetError(size.refusal(job.dataset_name))
    return True


def evaluate(model_id: str, protocol_name: str, options: EngineOptions | None = None, *,
             progress: ProgressCallback | None = None, log: LogCallback | None = None,
             phase: PhaseCallback | None = None, passes: PassCallback | None = None) -> EvalResult:
    """Evaluate one manifest row under one protocol ('single', 'flip' or 'ms+flip').

    Writes `<results folder>/<result file>` and its evidence sidecar (`options.results_folder`)
    and returns the result; resumes an interrupted run (unless
    `options.resume` is False) and returns a finished identical one without redoing it (unless
    `options.force`, which also replaces a complete result of other conditions, archived). A dataset folder
    smaller than the official split is refused unless `allow_subset` (or `limit`); its result is
    then partial. `options.variant`: "training-era" or "upstream-head" (None = the row's default).
    """
    options = options or EngineOptions()
    return run_job(build_job(model_id, protocol_name, options), options, progress=progress, log=log, phase=phase,
                   passes=passes)
