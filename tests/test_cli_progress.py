"""eval's live progress bar: one line at 80 columns, its figures never cut."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from repro.cli.progress import EvalProgress


@pytest.fixture(autouse=True)
def slow_clock(monkeypatch):
    """Each reading of the clock is 30 s later: a CPU-like 's/img' figure, the same on any machine."""
    import repro.cli.progress

    ticks = iter(range(0, 10**7, 30))
    monkeypatch.setattr(repro.cli.progress.time, "perf_counter", lambda: float(next(ticks)))


def frame(label: str, width: int) -> list[str]:
    """The bar's lines as a terminal of `width` columns would show them, after 12 of 10000 images."""
    terminal = Console(file=io.StringIO(), force_terminal=True, width=width)
    view = EvalProgress(label, True, terminal)
    with view:
        view.phase("evaluating")
        view(0, 10000)
        view(12, 10000)
        out = Console(file=io.StringIO(), width=width, color_system=None)
        out.print(view.progress.make_tasks_table(view.progress.tasks))
    return out.file.getvalue().rstrip("\n").splitlines()


@pytest.mark.parametrize("label", ["[1/1] mcibi_deeplabv3_r50_lip flip",
                                   "[12/108] memorynetv2_upernet_swinlarge_cocostuff10k ms+flip (rank 0's share)"])
def test_the_bar_and_its_eta_fit_one_line_at_80_columns(label):
    (line,) = frame(label, 80)
    assert "12/10000" in line and " eta " in line and "s/img" in line
    assert line.startswith(label[:20])


def test_a_label_that_fits_is_shown_whole():
    (line,) = frame("[1/1] mcibi_deeplabv3_r50_lip flip", 80)
    assert line.startswith("[1/1] mcibi_deeplabv3_r50_lip flip ")
