"""Progress state and resume.

A rank's progress is the number of images of its share already counted (a prefix), the time
they took, and each sink's own state (the confusion matrix, the per-image evidence rows, ...).
It is saved atomically every `save_every` images or `save_every_seconds`, and on a signal or an
error, under `<output>/.progress/`, tagged with a digest of everything that determines the
numbers, so an interrupted run resumes where it stopped and a stale state is never mixed in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from repro.engine.devices import Ranks
from repro.fileio import atomic_path
from repro.perf import process_peak_rss_bytes

PROGRESS_DIR = ".progress"
STATE_VERSION = 2  # 2: sink states (1 held the confusion matrix alone)


def progress_path(output: Path, model_id: str, protocol_name: str, ranks: Ranks,
                  variant: str | None = None, default_variant: str | None = None, stem: str | None = None) -> Path:
    """`<output>/.progress/<result stem>[.rankR-of-W].pt`; `stem` overrides the default result stem."""
    from repro.results.files import result_filename

    stem = stem or result_filename(model_id, protocol_name, variant, default_variant)[: -len(".json")]
    suffix = f".rank{ranks.rank}-of-{ranks.world_size}" if ranks.distributed else ""
    return Path(output) / PROGRESS_DIR / f"{stem}{suffix}.pt"


def run_fingerprint(job: Any, options: Any, ranks: Ranks, ids: Sequence[str]) -> str:
    """A digest of everything that determines this rank's numbers."""
    content = {
        "state_version": STATE_VERSION,
        "model_id": job.model_id,
        "protocol": job.protocol_name,
        "settings": job.settings(),
        "checkpoint_sha256": job.checkpoint_sha256,
        "variant": job.variant,  # the two forwards of a checkpoint never share progress
        "dataset": job.dataset_name,
        "split": job.split,
        "data_root": job.data_root,
        "num_classes": job.num_classes,
        "precision": options.precision,
        "limit": options.limit,
        "rank": ranks.rank,
        "world_size": ranks.world_size,
        "ids": hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest(),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()


@dataclass
class State:
    fingerprint: str
    done: int = 0  # images of this rank's share already counted (a prefix of the share)
    seconds: float = 0.0  # time of the counted images, over all sessions
    started: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    flops_per_image: float | None = None  # counted once, on the first image evaluated
    peak_memory: int | None = None  # the highest peak of all sessions
    sinks: dict[str, Any] = field(default_factory=dict)  # sink name -> its state()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"fingerprint": self.fingerprint, "done": int(self.done), "seconds": float(self.seconds),
                   "started": self.started, "flops_per_image": self.flops_per_image,
                   "peak_memory": self.peak_memory, "sinks": self.sinks}
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: Path) -> State | None:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            return cls(fingerprint=str(payload["fingerprint"]), done=int(payload["done"]),
                       seconds=float(payload["seconds"]), started=str(payload["started"]),
                       flops_per_image=payload.get("flops_per_image"), peak_memory=payload.get("peak_memory"),
                       sinks=dict(payload["sinks"]))
        except FileNotFoundError:
            return None
        except Exception:  # unreadable or foreign: start over rather than trust it
            return None


def resume_state(fingerprint: str, resume: bool, share_size: int, state_file: Path,
                 say: Callable[[str], None]) -> tuple[State, bool]:
    """The saved progress of this exact setup, or a fresh state; (state, fresh)."""
    state = State.load(state_file) if resume else None
    if state is not None and state.fingerprint != fingerprint:
        say("ignoring saved progress from a different setup")
        state = None
    if state is not None and state.done > share_size:
        state = None
    if state is None:
        return State(fingerprint), True
    if state.done:
        say(f"resuming after {state.done} of {share_size} images")
    return state, False


def drop_state(state_file: Path) -> None:
    state_file.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        state_file.parent.rmdir()  # only when no other run keeps progress there


def peak_memory(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return process_peak_rss_bytes()


class Session:
    """One rank's running share: the counter, the time of the counted images and the sinks,
    saved every N images or T seconds. Only the time up to the last counted image is kept: an
    image interrupted half-way is redone on resume, and its time is not counted twice."""

    def __init__(self, state: State, sinks: Sequence[Any], state_file: Path, options: Any, device: torch.device):
        self.state, self.sinks, self.state_file, self.device = state, list(sinks), state_file, device
        self.every, self.every_seconds = options.save_every, options.save_every_seconds
        self.kept_seconds = state.seconds
        self.since_save = 0
        self.restart_clock()

    def restart_clock(self) -> None:
        """Time counts from here: images/s measures evaluation, not model building and loading."""
        self.start = self.last_save = time.perf_counter()
        self.seconds_before = self.kept_seconds

    @contextlib.contextmanager
    def clock_paused(self):
        """The time spent inside is left out of the evaluation's seconds."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.start += time.perf_counter() - began

    def counted(self) -> None:
        """One more image is in every sink (call inside `Interrupts.atomic`)."""
        now = time.perf_counter()
        self.state.done += 1
        self.kept_seconds = self.seconds_before + (now - self.start)
        self.since_save += 1
        if self.since_save >= self.every or now - self.last_save >= self.every_seconds:
            self.save()

    def save(self) -> None:
        self.state.sinks = {sink.name: sink.state() for sink in self.sinks}
        self.state.seconds = self.kept_seconds
        peaks = [p for p in (self.state.peak_memory, peak_memory(self.device)) if p is not None]
        self.state.peak_memory = max(peaks) if peaks else None
        self.state.save(self.state_file)
        self.last_save, self.since_save = time.perf_counter(), 0
