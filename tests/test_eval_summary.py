"""The summary `repro eval` prints (issue 18 #4) and the one comparison rule it shares with the
report (issue 16): 80 columns in a terminal and in a pipe, numbers never cut."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from repro.cli import layout, summary
from repro.cli.layout import output_width
from repro.results.comparison import compare, compare_result, measured_rounded
from repro.results.files import EvalResult

LONG = "memorynetv2_upernet_resnest101os8_pascalcontext59"


@dataclass(frozen=True)
class Run:
    model_id: str
    protocol: str


class Entry:
    def __init__(self, documented):
        self.documented = documented


class Manifest:
    def __init__(self, documented):
        self.documented = documented

    def get(self, model_id):
        return Entry(self.documented.get(model_id, {}))


def result(model_id: str, protocol: str, miou: float, **overrides) -> EvalResult:
    fields = dict(
        model_id=model_id, protocol=protocol, settings={}, dataset="lip", split="val", data_root="/d",
        status="complete", miou=miou, miou_rounded=round(miou, 2), num_images=10000, num_images_total=10000,
        device="cpu", torch_version="2.13.0", repro_version="0.1.0",
        started=datetime(2024, 5, 1, tzinfo=timezone.utc), finished=datetime(2024, 5, 1, 1, tzinfo=timezone.utc),
        seconds=15600.0, images_per_second=10000 / 15600.0, seconds_per_image=1.56,
    )
    fields.update(overrides)
    return EvalResult(**fields)


ROWS = [
    (Run(LONG, "ms+flip"), result(LONG, "ms+flip", 53.456789), ""),
    (Run("mcibi_deeplabv3_r50_lip", "flip"),
     result("mcibi_deeplabv3_r50_lip", "flip", 28.87, status="partial", partial_reason="limit", limit=1,
            num_images=1), ""),
    (Run("mcibi_deeplabv3_r101_lip", "single"), None, "CheckpointError: a long reason why it failed " * 3),
]
MANIFEST = Manifest({LONG: {"ms+flip": 53.50}, "mcibi_deeplabv3_r50_lip": {"flip": 49.20}})


@pytest.mark.parametrize("width", [80, 72])
def test_summary_fits_the_width_and_never_cuts_a_number(width):
    lines = summary.render_summary(ROWS, MANIFEST, width)
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    text = "\n".join(lines)
    for number in ("53.46", "53.50", "-0.04 ✓", "28.87", "49.20", "10000/10000", "1/10000", "1.6 s/img"):
        assert number in text, number
    assert LONG in lines  # the id whole, on a line of its own
    assert "…" not in text
    assert any(line.startswith("  mcibi_deeplabv3_r101_lip single: CheckpointError") for line in lines)


def test_summary_is_one_line_per_run_when_it_fits():
    lines = summary.render_summary(ROWS[:2], MANIFEST, 200)
    assert lines[1].split() == ["model", "protocol", "status", "mIoU", "documented", "Δ", "images", "speed"]
    assert lines[2].split()[:4] == [LONG, "ms+flip", "complete", "53.46"]


def test_pipe_width_follows_columns_else_80(monkeypatch):
    pipe = io.StringIO()
    monkeypatch.delenv("COLUMNS", raising=False)
    assert output_width(pipe) == 80  # not 132, not 200
    monkeypatch.setenv("COLUMNS", "100")
    assert output_width(pipe) == 100
    assert output_width(pipe, most=90) == 90


def test_summary_and_report_share_the_comparison_rule():
    """Near the tolerance the unrounded Δ (0.104) and the rounded one (0.10) disagree; the
    summary uses the report's rule: rounded first, decimal arithmetic, |Δ| <= 0.1 passes."""
    near = result("m", "single", 44.494, miou_rounded=None)
    assert measured_rounded(near) == Decimal("44.49")
    assert compare_result(near, 44.39) == (Decimal("0.10"), True)
    assert compare(Decimal("44.50"), Decimal("44.39"), 0.1) == (Decimal("0.11"), False)
    rows = [(Run("m", "single"), near, "")]
    (line,) = [line for line in summary.render_summary(rows, Manifest({"m": {"single": 44.39}}), 200) if "44.49" in line]
    assert "+0.10 ✓" in line

    from repro.report import table as report

    assert report.compare is compare and report.measured_rounded is measured_rounded


def test_terminal_width_is_the_terminal_s(monkeypatch):
    import os

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(layout.shutil, "get_terminal_size", lambda fallback: os.terminal_size((80, 24)))
    width = output_width(Tty())
    assert width == 80
    assert all(len(line) <= width for line in summary.render_summary(ROWS, MANIFEST, width))


def test_event_lines_wrap_between_words_on_a_terminal_and_stay_whole_in_a_pipe():
    from rich.console import Console

    from repro.cli.layout import terminal_lines

    line = ("[1/2] mcibi_deeplabv3_r50_lip single: mIoU 0.38 (partial: 3 of the official 10000 images, "
            "not compared); 12.9 s/img, 0.65 TFLOP/img, process peak RSS 1.0 GiB")
    terminal = Console(width=80, force_terminal=True)
    wrapped = terminal_lines(terminal, line)
    assert len(wrapped) > 1 and all(len(part) <= 80 for part in wrapped)
    assert " ".join(part.strip() for part in wrapped) == line  # every word whole, none lost
    assert all(part.startswith("  ") for part in wrapped[1:])
    assert terminal_lines(Console(width=80, force_terminal=False), line) == [line]


@pytest.mark.parametrize("precision, expected", [("fp32", "27% of fp32 peak"), ("tf32", "9% of TF32 peak"),
                                                 ("tf32-all", "9% of TF32 peak")])
def test_the_share_of_the_peak_names_the_peak_it_was_taken_against(precision, expected):
    """Issue 25 #5: a tf32 run's fraction is taken against the TF32 tensor-core peak
    (repro.perf.device_peak_flops), so it must not print as a share "of fp32 peak"."""
    from repro.cli.eval import _perf_text

    fraction = 0.27 if precision == "fp32" else 0.09
    measured = result("m", "single", 50.0, precision=precision, peak_flops_fraction=fraction)
    assert summary.peak_share_text(measured) == expected
    assert expected in _perf_text(measured)
    assert summary.peak_share_text(result("m", "single", 50.0)) == ""
