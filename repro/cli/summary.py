"""The summary `repro eval` prints when its runs are done: plain aligned text that fits the width.

Numbers are never cut. When a line is too wide, the text gives way first: the notes go below the
table (wrapped), then each model id gets a line of its own above its runs; only after that do the
speed and image columns go. The width is the terminal's; in a pipe $COLUMNS, else 80. Δ and its
mark come from `repro.results.comparison`, the rule `repro report` uses.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from repro.cli.layout import aligned_lines
from repro.cli.progress import format_rate
from repro.numerics import COMPARABLE
from repro.results.current import partial_note
from repro.text import two_decimals

NUMBERS = ("mIoU", "documented", "Δ", "images", "speed")
DROPPED_LAST = ("speed", "images")  # numbers that may go (never be cut) at a very narrow width


def speed_text(result: Any) -> str:
    """'2.31 img/s' or '4.2 s/img' from the result's timing ('' when nothing was timed)."""
    if result.seconds_per_image:
        return format_rate(1, result.seconds_per_image)
    if result.images_per_second:
        return format_rate(round(result.images_per_second * result.seconds), result.seconds)
    return ""


def peak_share_text(result: Any) -> str:
    """'27% of fp32 peak', or for a tf32 / tf32-all run '9% of TF32 peak': the peak the recorded
    fraction was taken against ('' when none was recorded)."""
    from repro.perf import peak_name

    if result.peak_flops_fraction is None:
        return ""
    return f"{result.peak_flops_fraction:.0%} of {peak_name(getattr(result, 'precision', None))}"



def _delta_text(result: Any, documented: float | None) -> str:
    """Δ of the rounded mIoU against the document, with ✓/✗ as the report marks it."""
    from repro.results.comparison import compare_result

    compared = compare_result(result, documented)
    if compared is None:
        return ""
    delta, within = compared
    return f"{float(delta) + 0.0:+.2f} {'✓' if within else '✗'}"


def _notes(result: Any, note: str) -> list[str]:
    notes = [note] if note else []
    if result.submission:
        notes.append(f"submission: {result.submission}")
    if result.status == "partial":
        notes.append(f"partial: {partial_note(result)}, not compared")
    if result.precision not in COMPARABLE:
        notes.append(f"{result.precision}, not compared")
    elif result.precision != "fp32":  # tf32 / tf32-all: compared, and said so
        notes.append(f"{result.precision} arithmetic, compared")
    return notes


def summary_cells(rows: Sequence[tuple], manifest: Any) -> tuple[list[dict[str, str]], list[str]]:
    """(one dict of cells per run, the notes as 'model protocol: note' lines).

    `rows`: (run, result or None, note) with run.model_id and run.protocol; a None result failed.
    """
    from repro.results.comparison import measured_rounded

    cells, notes = [], []
    for run, result, note in rows:
        documented = manifest.get(run.model_id).documented.get(run.protocol)
        row = {"model": run.model_id, "protocol": run.protocol, "status": "failed", "mIoU": "",
               "documented": two_decimals(documented, missing=""), "Δ": "", "images": "", "speed": ""}
        lines = [note] if note else []
        if result is not None:
            comparable = result.status == "complete" and result.precision in COMPARABLE
            row.update(status=result.status, mIoU=two_decimals(measured_rounded(result), missing=""), speed=speed_text(result),
                       images=f"{result.num_images}/{result.num_images_total}")
            row["Δ"] = _delta_text(result, documented) if comparable else ""
            lines = _notes(result, note)
        cells.append(row)
        notes += [f"{run.model_id} {run.protocol}: {line}" for line in lines]
    return cells, notes


def render_summary(rows: Sequence[tuple], manifest: Any, width: int = 80) -> list[str]:
    """The summary as lines of at most `width` characters (a model id longer than that excepted)."""
    cells, notes = summary_cells(rows, manifest)
    columns = ["model", "protocol", "status", *NUMBERS]
    lines = aligned_lines(cells, columns, right=NUMBERS)
    if max(map(len, lines)) > width:
        lines = _ids_on_their_own_lines(cells, [c for c in columns if c != "model"], width)
    out = ["evaluation summary", *lines]
    if notes:
        out.append("notes:")
        for note in notes:
            out += textwrap.wrap(note, width=max(width, 40), initial_indent="  ", subsequent_indent="    ",
                                 break_long_words=False, break_on_hyphens=False)
    return out


def _ids_on_their_own_lines(cells: list[dict[str, str]], columns: list[str], width: int) -> list[str]:
    """Each model id alone on a line, its runs indented below it; numbers dropped (whole) only
    while a line is still too wide."""
    columns = list(columns)
    for name in ("", *DROPPED_LAST):
        if name:
            columns.remove(name)
        lines = aligned_lines(cells, columns, right=NUMBERS)
        if max(len(line) for line in lines) + 2 <= width:
            break
    out, current = ["  " + lines[0]], None
    for row, line in zip(cells, lines[1:]):
        if row["model"] != current:
            current = row["model"]
            out.append(current)
        out.append("  " + line)
    return out
