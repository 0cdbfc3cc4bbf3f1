"""What the fetch commands say while they work: status lines (silenced by `quiet`, never the
warnings), sizes for people, and byte progress: a rich bar on a terminal, plain lines in a pipe
only for transfers that last."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


_QUIET: ContextVar[bool] = ContextVar("repro_fetch_quiet", default=False)


def say(message: str, *, always: bool = False) -> None:
    """One status line on stderr (resolved at call time so test runners can capture it).

    Status lines are dropped inside `quiet(True)`; warnings (`always=True`) never are.
    """
    if always or not _QUIET.get():
        print(message, file=sys.stderr, flush=True)


@contextmanager
def quiet(enabled: bool) -> Iterator[None]:
    """Silence status lines (not warnings) for the calls made inside the block."""
    token = _QUIET.set(enabled)
    try:
        yield
    finally:
        _QUIET.reset(token)


def human_size(num_bytes: float | None) -> str:
    if num_bytes is None:
        return "unknown size"
    value = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover


class Progress:
    """Byte progress of one transfer. Quiet base class: reports nothing."""

    def start(self, label: str, total: int | None, done: int, verb: str = "downloading") -> None:  # noqa: B027
        pass

    def advance(self, num_bytes: int) -> None:  # noqa: B027
        pass

    def restart(self, done: int) -> None:  # noqa: B027
        pass

    def finish(self) -> None:  # noqa: B027
        pass

    def abort(self) -> None:  # noqa: B027
        """The transfer failed or was interrupted: close the display without a 'done'."""


class LineProgress(Progress):
    """Non-interactive output (logs, CI, pipes): a start line for a download, then lines only
    for transfers that last (the first after FIRST_LINE_S, then at growing intervals, as eval's
    plain progress), and an end line after those. A quick import prints nothing: the command's
    own line says what came of it."""

    FIRST_LINE_S = 30.0

    def __init__(self) -> None:
        self.total: int | None = None
        self.done = 0
        self.started_at = 0.0
        self.last_line = 0.0
        self.lines = 0
        self.label = ""

    def start(self, label: str, total: int | None, done: int, verb: str = "downloading") -> None:
        self.label, self.total, self.done = label, total, done
        self.started_at = self.last_line = time.monotonic()
        self.lines = 0
        if verb == "downloading":  # a log should say what is being fetched from where, before the wait
            resumed = f", resuming at {human_size(done)}" if done else ""
            say(f"{verb} {label} ({human_size(total)}{resumed})")

    def advance(self, num_bytes: int) -> None:
        self.done += num_bytes
        now = time.monotonic()
        elapsed = now - self.started_at
        if now - self.last_line >= max(self.FIRST_LINE_S, min(300.0, elapsed / 10)):
            self.last_line = now
            self.lines += 1
            share = f"{100 * self.done // self.total}% " if self.total else ""
            say(f"  {self.label}: {share}({human_size(self.done)}, {human_size(self.done / elapsed)}/s)")

    def restart(self, done: int) -> None:
        self.done = done

    def finish(self) -> None:
        if self.lines:
            elapsed = max(time.monotonic() - self.started_at, 1e-6)
            say(f"  {self.label}: done, {human_size(self.done)} in {elapsed:.1f} s")


class RichProgress(Progress):
    """Interactive bar on a terminal: bytes, speed and time left."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichBar

        self._bar = RichBar(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = None

    def start(self, label: str, total: int | None, done: int, verb: str = "downloading") -> None:
        if self._task is None:
            self._bar.start()
            self._task = self._bar.add_task(label, total=total, completed=done)
        else:
            self._bar.update(self._task, total=total, completed=done)

    def advance(self, num_bytes: int) -> None:
        if self._task is not None:
            self._bar.advance(self._task, num_bytes)

    def restart(self, done: int) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=done)

    def finish(self) -> None:
        if self._task is not None:
            self._bar.stop()
            self._task = None

    abort = finish


def make_progress(enabled: bool) -> Progress:
    """Rich bars when stderr is a terminal, plain lines otherwise, nothing when disabled."""
    if not enabled:
        return Progress()
    if sys.stderr.isatty():
        return RichProgress()
    return LineProgress()
