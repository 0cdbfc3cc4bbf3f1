"""The core loop: predict -> argmax -> every sink's part prepared, then all added, then the image
counted, inside the interrupt-safe block -> progress. Model loading and the FLOP count of the
first image are here too."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from repro.engine.job import EngineOptions, EvalJob
from repro.engine.loader import Failure, TransformedSamples, default_workers, loader
from repro.engine.progress import ProgressNotSaved, Session
from repro.engine.signals import Interrupts
from repro.engine.sinks import Sample
from repro.errors import DatasetError, ReproError
from repro.inference.flops import FlopObserver, count_flops
from repro.inference.footprint import footprint_of
from repro.inference.predictor import Predictor
from repro.manifest import field_of
from repro.text import counted

ProgressCallback = Callable[[int, int], None]  # (images done on this rank, images of this rank)
PhaseCallback = Callable[[str], None]  # "building model", "loading checkpoint", "evaluating"
PassCallback = Callable[[int, int], None]  # (forward inputs done within the current image, its inputs)


@dataclass(frozen=True)
class Watchers:
    """Who hears about a run as it goes (each optional): images done, the phase, forward passes
    within an image (the heartbeat of long images), and one-line notes."""

    progress: ProgressCallback | None = None
    phase: PhaseCallback | None = None
    passes: PassCallback | None = None
    log: Callable[[str], None] | None = None


def evaluate_share(job: EvalJob, options: EngineOptions, device: torch.device, share: list[int],
                   session: Session, watchers: Watchers) -> None:
    """Predict the images of this rank's share not counted yet and hand each to every sink."""
    state, tell, phase = session.state, watchers.progress or (lambda done, total: None), watchers.phase
    model = build_model(job, device, phase or (lambda name: None))
    predictor = make_predictor(job, options, device, model, watchers)
    batched_before = dict(state.batching)
    samples = TransformedSamples(job.dataset, share[state.done:], job.protocol)
    flops = FirstImageFlops(model, predictor, job, options, wanted=state.flops_per_image is None)
    _start(device, session, phase)
    tell(state.done, len(share))
    try:
        with Interrupts() as interrupts:
            for item in loader(samples, default_workers() if options.workers is None else max(0, options.workers)):
                sample, image = _sample(job, item, device)
                with flops.watch():
                    scores = predictor(image, sample.size)
                prediction = scores.argmax(dim=0)  # first maximum on ties, as upstream
                del scores
                with interrupts.atomic():
                    parts = [sink.prepare(sample, prediction) for sink in session.sinks]  # may fail: nothing held yet
                    for sink, part in zip(session.sinks, parts):
                        sink.add(part)
                    session.counted()
                state.batching = combined_batching([batched_before, predictor.batching()])
                flops.record(state, session, image.shape, sample.size)
                tell(state.done, len(share))
    except BaseException as err:
        _save_after_failure(session, err)  # every sink holds exactly `done` images: safe to resume from
        _raise_out_of_memory(err, job, device)
        if isinstance(err, OSError):  # a full disk, a folder gone read-only: one line, then resume
            where = f" ({err.filename})" if err.filename else ""
            raise ReproError(f"{job.model_id} [{job.protocol_name}]: {err.strerror or err}{where}; the progress of "
                             f"{counted(session.saved_done, 'image')} is saved: fix that and run the same command to resume") from None
        raise
    del predictor, model
    if device.type == "cuda":
        torch.cuda.empty_cache()


def make_predictor(job: EvalJob, options: EngineOptions, device: torch.device, model: torch.nn.Module,
                   watchers: Watchers) -> Predictor:
    """The Predictor of a run: on a GPU it also keeps each batch within the free memory, from the
    architecture's memory figures (`repro.inference.footprint`); an out-of-memory halving is said
    once through the run's log."""
    footprint = footprint_of(job.upstream_config) if device.type == "cuda" and job.upstream_config else None
    return Predictor(model, job.protocol, job.num_classes, field_of(job.protocol, "flip_pairs", ()), device,
                     max_batch=options.max_batch, precision=options.precision, resize_on_cpu=options.resize_on_cpu,
                     footprint=footprint, log=watchers.log, pass_progress=watchers.passes)


def combined_batching(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """How the inputs were batched over sessions (a resumed run) or ranks (`Predictor.batching`):
    the most inputs one forward held, out-of-memory halvings summed, the lowest bound they left."""
    parts = [part for part in parts if part]
    if not parts:
        return {}
    bounds = [part["max_batch_after_oom"] for part in parts if part.get("oom_halvings")]
    return {"batch_pixels": parts[-1].get("batch_pixels"),
            "largest_batch": max(int(part.get("largest_batch", 0)) for part in parts),
            "oom_halvings": sum(int(part.get("oom_halvings", 0)) for part in parts),
            "max_batch_after_oom": min(bounds) if bounds else None}


def _save_after_failure(session: Session, err: BaseException) -> None:
    """Save the progress after `err`; a failure of the save itself (full disk) is the error
    to report, unless `err` was that same failure."""
    if not isinstance(err, ProgressNotSaved):
        session.save()


def _start(device: torch.device, session: Session, phase: PhaseCallback | None) -> None:
    if phase:
        phase("evaluating")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    session.restart_clock()


def _sample(job: EvalJob, item: Any, device: torch.device) -> tuple[Sample, torch.Tensor]:
    """A loaded item as the sinks see it; a missing or misfit label is one error line."""
    if isinstance(item, Failure):
        raise item.error
    sample_id, image, label, size = item
    if not job.server:
        if label is None:
            raise DatasetError(f"{job.dataset_name} sample {sample_id} has no label in split {job.split}")
        if tuple(label.shape) != tuple(size):
            raise DatasetError(f"label of {sample_id} is {tuple(label.shape)}, image is {tuple(size)}")
        label = label.to(device, non_blocking=True)
    return Sample(sample_id, None if job.server else label, size, job.num_classes), image


def _raise_out_of_memory(err: BaseException, job: EvalJob, device: torch.device) -> None:
    if isinstance(err, RuntimeError) and device.type == "cuda" and "out of memory" in str(err).lower():
        raise ReproError(
            f"{job.model_id} [{job.protocol_name}]: out of GPU memory on {device}; "
            f"retry with --max-batch 1, another GPU, or --precision bf16 (not comparable)"
        ) from None


def build_model(job: EvalJob, device: torch.device, tell: PhaseCallback) -> torch.nn.Module:
    """The job's network with its weights, eval mode, on the device (`job.load_model` for a
    manifest row: repro.models.load_segmentor; `job.build_model` for a network given as is)."""
    if job.load_model is not None:
        model = job.load_model(tell)
    else:
        tell("building model")
        model = job.build_model()
    return model.eval().to(device)


class FirstImageFlops:
    """The FLOPs of the first image's forward passes: watched on the real calls where that is
    exact (FlopObserver), else counted once on a "meta" twin (no arithmetic, not timed)."""

    def __init__(self, model: torch.nn.Module, predictor: Predictor, job: EvalJob, options: EngineOptions,
                 wanted: bool):
        self.model, self.predictor, self.job, self.options, self.wanted = model, predictor, job, options, wanted
        self.observer = FlopObserver() if wanted and FlopObserver.observable(model) else None
        self.retries = predictor.oom_retries

    def watch(self):
        return self.observer if self.wanted and self.observer is not None else contextlib.nullcontext()

    def _observed(self) -> float | None:
        observer = self.observer
        if observer is None or self.retries != self.predictor.oom_retries or not observer.complete or observer.total <= 0:
            return None  # an out-of-memory retry would count the failed forward too
        return float(observer.total)

    def record(self, state: Any, session: Session, image_shape: tuple, size: tuple[int, int]) -> None:
        if not self.wanted:
            return
        self.wanted = False
        state.flops_per_image = self._observed()
        if state.flops_per_image is None:
            with session.clock_paused():  # that counting (imports, a second) is not timed
                state.flops_per_image = count_flops(
                    self.model, self.job.protocol, self.job.num_classes, tuple(image_shape), size,
                    flip_pairs=field_of(self.job.protocol, "flip_pairs", ()), max_batch=self.options.max_batch)
