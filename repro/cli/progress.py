"""Progress of one evaluation: a rich bar on a terminal, plain lines at growing intervals in a pipe.

The rate and the time left come from the whole session's average (images done since the first
progress call / time since then), not from a short speed window: on a CPU one image can take
longer than rich's 30 s window, and its own time-remaining column then shows nothing.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn
from rich.table import Column
from rich.text import Text


def format_rate(images: int, seconds: float) -> str:
    """'2.31 img/s', or '4.2 s/img' below one image per second; '' before the first image."""
    if images <= 0 or seconds <= 0:
        return ""
    rate = images / seconds
    return f"{rate:.2f} img/s" if rate >= 1 else f"{seconds / images:.1f} s/img"


def format_clock(seconds: float) -> str:
    """h:mm:ss (or m:ss under an hour)."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def line_interval(elapsed: float) -> float:
    """Seconds between plain progress lines: 30 s at first, then a tenth of the time so far, at
    most 5 min (a 2000-image run prints a few dozen lines, not one per image)."""
    return min(300.0, max(30.0, elapsed / 10))


class AverageEtaColumn(ProgressColumn):
    """Time left = images left x the session's average time per image, counted down between images."""

    def render(self, task: Task) -> Text:
        per_image = task.fields.get("per_image")
        if not per_image or task.total is None:
            return Text("eta -", style="progress.remaining")
        since = time.perf_counter() - task.fields.get("updated", time.perf_counter())
        left = max(0.0, (task.total - task.completed) * per_image - since)
        return Text(f"eta {format_clock(left)}", style="progress.remaining")


BAR_WIDTH = 10  # at 80 columns the figures take ~35, the label keeps ~35 (a model id and protocol)


def progress_columns() -> list[ProgressColumn]:
    """One line at any width: the figures never wrap or shrink; the label gives way first (cut with
    an ellipsis; the line that ends the run names it whole)."""

    def fixed() -> Column:
        return Column(no_wrap=True)

    return [
        TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
        BarColumn(bar_width=BAR_WIDTH, table_column=fixed()),
        MofNCompleteColumn(table_column=fixed()),
        TextColumn("{task.fields[rate]}", table_column=fixed()),
        AverageEtaColumn(table_column=fixed()),
    ]


class EvalProgress:
    """Callable as the engine's `progress(done, total)`; `phase(name)` names what happens now."""

    def __init__(self, label: str, enabled: bool, console: Console):
        self.label = label
        self.enabled = enabled
        self.console = console
        self.interactive = enabled and console.is_terminal
        self.progress: Progress | None = None
        self.task = None
        self.first_done: int | None = None
        self.started = time.perf_counter()
        self.last_line = 0.0
        self.phases: list[tuple[str, float]] = []  # pipe: (phase, start time, then its duration)
        self.images: tuple[int, int] | None = None  # (done, total) at the last image
        self.image_started = 0.0

    def __enter__(self) -> EvalProgress:
        if self.interactive:
            self.progress = Progress(*progress_columns(), console=self.console, transient=True, expand=True)
            self.progress.__enter__()
            self.task = self.progress.add_task(self.label, total=None, rate="")
        return self

    def __exit__(self, *exc) -> bool:
        if self.progress is not None:
            self.progress.__exit__(*exc)
        return False

    def say(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def phase(self, name: str) -> None:
        """On a terminal the bar names the phase; in a pipe the phases before "evaluating" are
        summed up in one line when it starts (a failed start then prints only its error line)."""
        if not self.enabled:
            return
        if self.progress is not None:  # the figures say it is evaluating: the label keeps the room
            self.progress.update(self.task, description=self.label if name == "evaluating" else f"{self.label} ({name})")
            return
        now = time.perf_counter()
        if self.phases:
            self.phases[-1] = (self.phases[-1][0], now - self.phases[-1][1])
        if name == "evaluating":
            done = ", ".join(f"{what} {seconds:.1f} s" for what, seconds in self.phases)
            self.say(f"{self.label}: {done + '; ' if done else ''}evaluating")
            self.phases = []
        else:
            self.phases.append((name, now))

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.first_done is None:
            self.first_done, self.started = done, now
        counted, elapsed = done - self.first_done, now - self.started
        self.images, self.image_started = (done, total), now
        per_image = elapsed / counted if counted > 0 else None
        rate = format_rate(counted, elapsed)
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total, rate=rate, per_image=per_image, updated=now)
            return
        if done in (self.first_done, total) or now - self.last_line >= line_interval(elapsed):
            self.last_line = now
            eta = f", eta {format_clock((total - done) * per_image)}" if per_image and done < total else ""
            self.say(f"{self.label}: {done}/{total} images{', ' + rate if rate else ''}{eta}")

    def passes(self, done: int, total: int) -> None:
        """The heartbeat within one image, `Predictor(pass_progress=...)`: forward inputs done of
        the image's `total`. In a pipe it prints a line when nothing was printed for the usual
        interval (`line_interval`: 30 s to 5 min), so that an image of minutes still shows life;
        on a terminal the bar's counting-down ETA does."""
        if not self.enabled or self.progress is not None or self.images is None:
            return
        now = time.perf_counter()
        if now - self.last_line < line_interval(now - self.started):
            return
        self.last_line = now
        image, images = self.images[0] + 1, self.images[1]
        self.say(f"{self.label}: image {image}/{images}, pass {done} of {total} "
                 f"({format_clock(now - self.image_started)} on this image)")
