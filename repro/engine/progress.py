"""Progress state and resume.

A rank's progress is the number of images of its share already counted (a prefix), the time
they took, and each sink's own state with the settings it was saved under (the confusion matrix
and per-image counts, the names of the PNGs written, ...). It is saved atomically every
`save_every` images or `save_every_seconds`, and on a signal or an error, under
`<output>/.progress/`, with the conditions that determine the numbers (`run_conditions`: the
row, the checkpoint digest, the data, the ranks, and the arithmetic: precision, max-batch, where
the final resize runs, the device kind).

A run resumes only from a state saved under the same conditions, whose every sink the current
run has with the same settings, and which every sink takes back whole (repro.engine.run); any
other state is ignored with one line saying why, and the run starts from fresh sinks. A saved
sink the current run no longer has (--save-predictions dropped) is left behind: it only wrote
files beside the result.
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
from repro.errors import ReproError
from repro.fileio import atomic_path
from repro.perf import process_peak_rss_bytes
from repro.text import counted

PROGRESS_DIR = ".progress"
STATE_VERSION = 3  # 3: conditions and per-sink settings kept (2: sink states; 1: the matrix alone)


class ProgressNotSaved(ReproError):
    """Saving the progress failed (full disk, read-only folder); the state saved before is intact."""


def progress_path(output: Path, stem: str, ranks: Ranks) -> Path:
    """`<output>/.progress/<result stem>[.rankR-of-W].pt`."""
    suffix = f".rank{ranks.rank}-of-{ranks.world_size}" if ranks.distributed else ""
    return Path(output) / PROGRESS_DIR / f"{stem}{suffix}.pt"


def device_kind(device: torch.device) -> str:
    """The kind of device that computes, index aside: 'cpu' or 'cuda (NVIDIA H100 80GB HBM3)'."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def run_conditions(job: Any, options: Any, ranks: Ranks, ids: Sequence[str], device: torch.device,
                   dataset_fingerprint: str | None) -> dict[str, Any]:
    """Everything that determines this rank's numbers, as plain JSON values."""
    return {
        "state_version": STATE_VERSION,
        "model_id": job.model_id,
        "protocol": job.protocol_name,
        "settings": job.settings(),
        "checkpoint_sha256": job.checkpoint_sha256,
        "variant": job.variant,
        "dataset": job.dataset_name,
        "split": job.split,
        "data_root": job.data_root,
        "dataset_fingerprint": dataset_fingerprint,
        "num_classes": job.num_classes,
        "limit": options.limit,
        "rank": ranks.rank,
        "world_size": ranks.world_size,
        "images": len(ids),
        "ids": hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest(),
        # the arithmetic: each changes the float operations of a prediction
        "precision": str(options.precision),
        "max_batch": options.max_batch,
        "resize_on_cpu": options.resize_on_cpu,
        "device": device_kind(device),
    }


def fingerprint_of(conditions: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(conditions, sort_keys=True).encode("utf-8")).hexdigest()


# How a changed condition reads in the line that says why saved progress is not used.
_CONDITION_WORDS = {
    "model_id": "the model", "protocol": "the protocol", "settings": "the protocol settings",
    "checkpoint_sha256": "the checkpoint", "variant": "the forward", "dataset": "the dataset",
    "split": "the split", "data_root": "the data folder", "dataset_fingerprint": "the dataset files",
    "num_classes": "the class count", "limit": "--limit", "rank": "the rank", "world_size": "the number of ranks",
    "images": "the images", "ids": "the images", "precision": "--precision", "max_batch": "--max-batch",
    "resize_on_cpu": "--cpu-resize", "device": "the device",
}


def changed_conditions(was: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between two `run_conditions`, in words, e.g. ["--max-batch 4, now 1"]."""
    changed = []
    for key in now:
        if was.get(key) == now[key]:
            continue
        words = _CONDITION_WORDS.get(key, key)
        if key in ("limit", "precision", "max_batch", "device", "variant", "images", "world_size"):
            words = f"{words} {_value(was.get(key))}, now {_value(now[key])}"
        if words not in changed:
            changed.append(words)
    return changed


def _value(value: Any) -> str:
    return "none" if value is None else str(value)


@dataclass
class State:
    fingerprint: str
    conditions: dict[str, Any] = field(default_factory=dict)
    done: int = 0  # images of this rank's share already counted (a prefix of the share)
    seconds: float = 0.0  # time of the counted images, over all sessions
    started: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    flops_per_image: float | None = None  # counted once, on the first image evaluated
    peak_memory: int | None = None  # the highest peak of all sessions
    batching: dict[str, Any] = field(default_factory=dict)  # Predictor.batching over the sessions
    sinks: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"settings", "state"}

    def save(self, path: Path) -> None:
        payload = {"version": STATE_VERSION, "fingerprint": self.fingerprint, "conditions": self.conditions,
                   "done": int(self.done), "seconds": float(self.seconds), "started": self.started,
                   "flops_per_image": self.flops_per_image, "peak_memory": self.peak_memory, "batching": self.batching,
                   "sinks": self.sinks}
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: Path) -> tuple[State | None, str | None]:
        """(the saved state, None) or (None, why it cannot be used); (None, None): there is none."""
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return None, None
        except Exception as err:  # noqa: BLE001 - unreadable, truncated, not ours: never trusted
            return None, f"it is unreadable ({type(err).__name__})"
        if not isinstance(payload, dict):
            return None, "it is not a repro progress file"
        version = payload.get("version")
        if version != STATE_VERSION:
            return None, f"it was saved by another repro version (state format {version or 'older'}, not {STATE_VERSION})"
        try:
            return cls(fingerprint=str(payload["fingerprint"]), conditions=dict(payload["conditions"]),
                       done=int(payload["done"]), seconds=float(payload["seconds"]), started=str(payload["started"]),
                       flops_per_image=payload.get("flops_per_image"), peak_memory=payload.get("peak_memory"),
                       batching=dict(payload.get("batching") or {}),
                       sinks=dict(payload["sinks"])), None
        except (KeyError, TypeError, ValueError) as err:
            return None, f"it is malformed ({type(err).__name__}: {err})"


def saved_state(conditions: dict[str, Any], resume: bool, state_file: Path,
                say: Callable[[str], None]) -> State | None:
    """The progress saved under exactly these conditions, or None (after one line saying why a
    saved state is not used)."""
    if not resume:
        return None
    state, why = State.load(state_file)
    if state is None:
        if why:
            say(f"ignoring saved progress: {why}; starting over")
        return None
    if state.fingerprint != fingerprint_of(conditions) or state.conditions != conditions:
        changed = ", ".join(changed_conditions(state.conditions, conditions)) or "the run"
        say(f"ignoring saved progress made under other conditions ({changed}); starting over")
        return None
    if not 0 <= state.done <= conditions["images"]:
        say("ignoring saved progress: its image count does not fit; starting over")
        return None
    return state


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
        self.saved_done = state.done  # images counted in the state on disk
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
        """Save the progress; a failure (full disk, read-only folder) is one line, and the state
        saved before it stays as it was."""
        self.state.sinks = {sink.name: {"settings": sink.settings(), "state": sink.state()} for sink in self.sinks}
        self.state.seconds = self.kept_seconds
        peaks = [p for p in (self.state.peak_memory, peak_memory(self.device)) if p is not None]
        self.state.peak_memory = max(peaks) if peaks else None
        try:
            self.state.save(self.state_file)
        except OSError as err:
            raise ProgressNotSaved(
                f"cannot save the progress to {self.state_file}: {err.strerror or err}; the progress saved before "
                f"({counted(self.saved_done, 'image')}) is intact: fix that and run the same command to resume"
            ) from None
        self.saved_done = self.state.done
        self.last_save, self.since_save = time.perf_counter(), 0
