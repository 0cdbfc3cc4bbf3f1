"""Documented vs measured: the table a researcher pastes into a README or an issue.

`build_report` joins the manifest (what the model-zoo documents print) with result files (what
`repro eval` measured) into one table, a `Report`: one row (a dict of `REPORT_COLUMNS`) per
(model, protocol), in document order; `Report.to_frame()` gives it as a pandas DataFrame. The
renderers (repro/report/render.py) turn it into GitHub markdown, CSV,
JSON or a self-contained HTML page; `plot_deltas` draws Δ per row against the tolerance band.
The columns people read are declared once, in `DISPLAY_COLUMNS`. Plain rows, not a DataFrame,
because pandas alone takes longer to import (0.35 s) than `repro report` may take in all
(issue 18 #13: under 0.5 s).

Comparison rule (repro.results.comparison, shared with `repro eval`'s summary): the measured value is
rounded to 2 decimals first, as the documents print it, and Δ = rounded measured − documented is
computed in decimal arithmetic; a row reproduces when |Δ| <= tolerance, the edge exact.

A damaged result file does not stop the report: it is named in a note (`notes_of`) and the rest
is reported. When several files hold results of one row (a --limit run beside a finished one,
another precision), `repro.status.choose_result` picks the current one and the row says so.

Where a measured number misses the document but matches upstream's current number for the row
(the manifest's `upstream_now`), the row is "upstream-now" rather than failed: upstream changed
the number (most likely the file behind the URL) since the document was written. Each row also
says which forward (`variant`) produced its number.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro.results.brackets import precision_note, preferred_precision, report_bracket
from repro.results.comparison import DEFAULT_TOLERANCE, compare, measured_rounded  # noqa: F401  (one rule, re-exported)
from repro.results.comparison import as_decimal as _as_decimal
from repro.errors import ReproError
from repro.results.files import EvalResult
from repro.manifest import ordered_protocols
from repro.results.current import choose_result, default_variant, partial_note, result_variant
from repro.results.files import read_results_tolerant
from repro.text import counted

if TYPE_CHECKING:  # only for type hints
    import pandas as pd

    from repro.manifest import Manifest, ModelEntry

FORMATS = ("md", "csv", "json", "html")

# Row statuses (machine-readable slug -> the mark the tables show).
REPRODUCED = "reproduced"
FAILED = "failed"
NOT_RUN = "not-run"
BLANK_DOC = "blank-doc"
SERVER = "server"
PARTIAL = "partial"
NON_COMPARABLE = "non-comparable"
UPSTREAM_NOW = "upstream-now"  # misses the document, matches upstream's current number
STATUS_MARKS = {
    REPRODUCED: "✓",
    FAILED: "✗",
    NOT_RUN: "—",
    BLANK_DOC: "blank-doc",
    SERVER: "server",
    PARTIAL: "partial",
    NON_COMPARABLE: "non-comparable",
    UPSTREAM_NOW: "upstream-now",
}
# Rows whose Δ against the document is computed (and plotted).
COMPARED = (REPRODUCED, FAILED, UPSTREAM_NOW)
# Words of the summary line, in the order it lists them.
STATUS_WORDS = {
    REPRODUCED: "reproduced",
    FAILED: "failed",
    NOT_RUN: "not run",
    BLANK_DOC: "without a documented value",
    SERVER: "server",
    PARTIAL: "partial",
    NON_COMPARABLE: "non-comparable",
    UPSTREAM_NOW: "upstream-now",
}
ALWAYS_COUNTED = (REPRODUCED, FAILED, NOT_RUN)  # the summary names these even at 0


ENVIRONMENT_FIELDS = ("device", "torch_version", "cuda_version", "repro_version", "git_commit")
ENVIRONMENT_LABELS = {
    "device": "Device",
    "torch_version": "torch",
    "cuda_version": "CUDA",
    "repro_version": "repro",
    "git_commit": "commit",
}

# Every column of a report row, in order (missing values are None).
REPORT_COLUMNS = [
    "group",  # index of the document table (method -> dataset heading) the row belongs to
    "method",
    "document",  # the document's title (e.g. "MCIBI (ICCV 2021)"), not its file name
    "section",  # the document's section heading (e.g. "SOTA Results")
    "table",  # the dataset heading of the table within that section
    "model_id",
    "segmentor",
    "head",
    "backbone",
    "dataset",
    "eval",
    "protocol",
    "documented",  # percent, 2 decimals as printed; None where the document leaves it blank
    "upstream_now",  # upstream's current number for the row (manifest upstream_now); None if none
    "upstream_now_date",
    "upstream_now_commit",
    "measured",  # percent, full precision from the result file
    "measured_rounded",  # percent, 2 decimals: the value compared
    "delta",  # measured_rounded - documented; None where not compared
    "status",  # one of STATUS_MARKS' keys
    "mark",  # the status as the tables show it
    "note",  # why a row is not compared, the submission zip, ...
    "result_status",  # complete | partial | server; None when not run
    "variant",  # the forward that produced the number (training-era | upstream-head); None when not run
    "default_variant",  # the row's default forward
    "precision",
    "other_precisions",  # issue 17: the row's other comparable arithmetic(s) and the spread ("" when none)
    "num_images",
    "num_images_total",
    "limit",
    "submission",
    *ENVIRONMENT_FIELDS,
    "result_file",  # the current result file of the row (None: not run, or results given as objects)
    "other_files",  # the names of the row's other result files, "; "-joined ("" when none)
    "per_class_iou",  # {class name: IoU percent or None}; None when not run
]
INTEGER_COLUMNS = ("num_images", "num_images_total", "limit")  # whole numbers in CSV and JSON too
FLOAT_COLUMNS = ("documented", "upstream_now", "measured", "measured_rounded", "delta")


@dataclass
class Report:
    """The table `build_report` builds: `rows` (dicts of REPORT_COLUMNS, document order) and what
    was read to build them. Iterating gives the rows; `to_frame()` the pandas DataFrame."""

    rows: list[dict]
    tolerance: float = DEFAULT_TOLERANCE
    ids: list[str] = field(default_factory=list)  # the models asked for (per-class sections), in document order
    notes: list[str] = field(default_factory=list)  # damaged result files, one line each
    results: int = 0  # how many result files (or objects) were read
    unmatched_results: list[str] = field(default_factory=list)  # results of models not in the manifest
    hidden: list[dict] = field(default_factory=list)  # rows without a result --measured-only left out

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def row(self, model_id: str, protocol: str) -> dict:
        """The row of one (model id, protocol); KeyError when the report has none."""
        for row in self.rows:
            if row["model_id"] == model_id and row["protocol"] == protocol:
                return row
        raise KeyError((model_id, protocol))

    def with_status(self, *statuses: str) -> list[dict]:
        return [row for row in self.rows if row["status"] in statuses]

    def to_frame(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame (REPORT_COLUMNS; numbers float64 with NaN for missing,
        counts Int64); the other fields in `frame.attrs`."""
        import pandas as pd

        frame = pd.DataFrame(self.rows, columns=REPORT_COLUMNS)
        for column in FLOAT_COLUMNS:
            frame[column] = frame[column].astype("float64")
        for column in INTEGER_COLUMNS:
            frame[column] = frame[column].astype("Int64")
        frame.attrs.update(
            tolerance=self.tolerance, ids=list(self.ids), notes=list(self.notes), results=self.results,
            unmatched_results=list(self.unmatched_results), hidden_rows=len(self.hidden),
        )
        return frame



@dataclass(frozen=True)
class Column:
    """A column of the human-facing tables (markdown, HTML): the row field it shows, its
    heading, alignment, and whether it is a number (2 decimals; `signed`: with its sign)."""

    field: str
    heading: str
    align: str = "left"  # left | right | center
    numeric: bool = False
    signed: bool = False


def _number_column(field: str, heading: str, signed: bool = False) -> Column:
    return Column(field, heading, "right", numeric=True, signed=signed)


# What the human-facing tables show, in order: adding a column is one line here. (Issue 17's
# precision brackets, a comparable non-fp32 number beside the fp32 one, go in as a column here.)
DISPLAY_COLUMNS = [
    Column("model_id", "Model"),
    Column("head", "Head"),
    Column("backbone", "Backbone"),
    Column("protocol", "Protocol"),
    _number_column("documented", "Documented"),
    _number_column("upstream_now", "Upstream now"),
    _number_column("measured_rounded", "Measured"),
    _number_column("delta", "Δ", signed=True),
    Column("mark", "Status", "center"),
    Column("variant", "Variant"),
    Column("note", "Notes"),
]


# --------------------------------------------------------------------------------------------
# Building the table


def load_report_results(results_dir: str | os.PathLike) -> tuple[list[tuple[Path, EvalResult]], list[str]]:
    """((path, result) for each readable result file of a folder, one note per damaged file).

    A damaged file is named and skipped, as `repro status` does; a folder that does not exist
    is more likely a typo, so it is an error.
    """
    folder = Path(results_dir)
    if not folder.exists():
        raise ReproError(
            f"results folder {folder} does not exist (run `repro eval` first, or pass --results DIR)"
        )
    if not folder.is_dir():
        raise ReproError(f"--results {folder} is a file, not a folder of result files")
    found, damaged = read_results_tolerant(folder, verify_evidence=True)
    return found, [f"skipped {line}" for line in damaged]


def _entry_protocols(entry: ModelEntry, measured: Iterable[str]) -> list[str]:
    """The documented protocols of an entry plus any protocol a result file exists for."""
    return ordered_protocols([*entry.documented.keys(), *measured])


def document_title(entry: ModelEntry) -> str:
    """The title of the document a row comes from (e.g. "MCIBI (ICCV 2021)"), not its file name."""
    return getattr(entry, "document_title", None) or entry.document


def upstream_now(entry: ModelEntry, protocol: str) -> tuple[Decimal | None, Any]:
    """(upstream's current number for this protocol or None, the manifest's upstream_now record)."""
    record = getattr(entry, "upstream_now", None)
    if record is None:
        return None, None
    numbers = getattr(record, "documented", None) or {}
    return _as_decimal(numbers.get(protocol)), record


Found = tuple  # (path of the result file or None, EvalResult)


def _group_results(found: Iterable[Found]) -> dict[tuple[str, str], list[Found]]:
    grouped: dict[tuple[str, str], list[Found]] = {}
    for path, result in found:
        grouped.setdefault((result.model_id, result.protocol), []).append((path, result))
    return grouped


def _base_row(entry: ModelEntry, protocol: str) -> dict:
    documented = _as_decimal(entry.documented.get(protocol))
    now_value, now = upstream_now(entry, protocol)
    return {
        "method": entry.method,
        "document": document_title(entry),
        "section": entry.section,
        "table": entry.table,
        "model_id": entry.id,
        "segmentor": entry.segmentor,
        "head": entry.head,
        "backbone": entry.backbone,
        "dataset": entry.dataset,
        "eval": entry.eval,
        "protocol": protocol,
        "documented": float(documented) if documented is not None else None,
        "upstream_now": float(now_value) if now_value is not None else None,
        "upstream_now_date": _text_or_none(now, "date") if now_value is not None else None,
        "upstream_now_commit": _text_or_none(now, "commit") if now_value is not None else None,
        "measured": None,
        "measured_rounded": None,
        "delta": None,
        "note": "",
        "result_status": None,
        "variant": None,
        "default_variant": default_variant(entry),
        "precision": None,
        "other_precisions": "",
        "num_images": None,
        "num_images_total": None,
        "limit": None,
        "submission": None,
        **{field: None for field in ENVIRONMENT_FIELDS},
        "result_file": None,
        "other_files": "",
        "per_class_iou": None,
    }


def _text_or_none(record: Any, field: str) -> str | None:
    value = getattr(record, field, None)
    return str(value) if value not in (None, "") else None


def _fill_measured(row: dict, result: EvalResult) -> None:
    rounded = measured_rounded(result)
    row.update(
        measured=float(result.miou) if result.miou is not None else None,
        measured_rounded=float(rounded) if rounded is not None else None,
        result_status=result.status,
        variant=result_variant(result),
        precision=result.precision,
        num_images=result.num_images,
        num_images_total=result.num_images_total,
        limit=result.limit,
        submission=result.submission,
        per_class_iou=dict(result.per_class_iou),
        **{field: getattr(result, field) for field in ENVIRONMENT_FIELDS},
    )


def _not_compared(entry: ModelEntry, result: EvalResult) -> tuple[str, str] | None:
    """(status, note) for a result that is not compared with the document, else None."""
    if result.status == "server":
        return SERVER, f"upload {result.submission}" if result.submission else "submission produced"
    if result.status == "partial":
        return PARTIAL, partial_note(result) + ", not compared"
    if result.split != entry.eval_split:  # e.g. Cityscapes val measured, test documented
        return NON_COMPARABLE, f"measured on {result.split}, documented on {entry.eval_split}; not compared"
    if precision_note(result.precision):  # bf16 / fp16, or a precision this version does not know
        return NON_COMPARABLE, precision_note(result.precision)
    if measured_rounded(result) is None:
        return NOT_RUN, "result file has no mIoU"
    return None


def _upstream_now_note(record: Any, *, replaced: bool = True) -> str:
    """E.g. `matches upstream's current number (2025-09-30, 9e983890): file behind the URL likely replaced`."""
    commit = _text_or_none(record, "commit")
    when = ", ".join(text for text in (_text_or_none(record, "date"), commit and commit[:8]) if text)
    note = f"matches upstream's current number{f' ({when})' if when else ''}"
    return note + ": file behind the URL likely replaced" if replaced else note


def _comparable(entry: ModelEntry, result: EvalResult) -> bool:
    return result.status == "complete" and _not_compared(entry, result) is None


def _judge(row: dict, entry: ModelEntry, result: EvalResult, others: list[EvalResult], tolerance: float) -> None:
    """Set the row's status, Δ and notes from its result (and the other variants' results)."""
    skipped = _not_compared(entry, result)
    if skipped is not None:
        row["status"], note = skipped
        _add_note(row, note)
        return
    rounded = measured_rounded(result)
    documented = _as_decimal(entry.documented.get(row["protocol"]))
    now_value, now = upstream_now(entry, row["protocol"])
    matches_now = now_value is not None and compare(rounded, now_value, tolerance)[1]
    if documented is None:
        row["status"] = BLANK_DOC
        _add_note(row, "no documented value")
        if matches_now:  # nothing was replaced: the document never had a number
            _add_note(row, _upstream_now_note(now, replaced=False))
        return
    delta, within = compare(rounded, documented, tolerance)
    row["delta"] = float(delta) + 0.0  # + 0.0 turns -0.0 into 0.0
    if within:
        row["status"] = REPRODUCED
    elif matches_now:
        row["status"] = UPSTREAM_NOW
        _add_note(row, _upstream_now_note(now))
    else:
        row["status"] = FAILED
        for other in others:  # would the other forward have given the document's number?
            other_rounded = measured_rounded(other)
            if _comparable(entry, other) and compare(other_rounded, documented, tolerance)[1]:
                _add_note(row, f"the {result_variant(other)} forward measured {other_rounded}: within tolerance")


def _add_note(row: dict, note: str) -> None:
    row["note"] = f"{row['note']}; {note}" if row["note"] else note


def _row(entry: ModelEntry, protocol: str, candidates: Sequence[Found], tolerance: float) -> dict:
    row = _base_row(entry, protocol)
    if not candidates:
        row["status"] = NOT_RUN
        if entry.eval == "server":
            row["note"] = "scored by the benchmark server"
        return row
    result, others = choose_result([r for _, r in candidates], row["default_variant"], preferred_precision(entry, protocol))
    # results in several comparable arithmetics: the documented number's (repro.results.brackets)
    result, bracket = report_bracket(entry, protocol, result, [r for _, r in candidates], tolerance)
    _fill_measured(row, result)
    _judge(row, entry, result, others, tolerance)
    if bracket is not None:
        row["other_precisions"] = bracket.text()
        _add_note(row, f"compared in {bracket.chosen} ({bracket.why}); {bracket.text()}")
    if row["variant"] != row["default_variant"] and row["status"] != NOT_RUN:
        _add_note(row, f"{row['variant']} forward, not this row's default ({row['default_variant']})")
    _note_files(row, result, candidates)
    return row


def _note_files(row: dict, current: EvalResult, candidates: Sequence[Found]) -> None:
    """Which file the row's number comes from, when several hold results of the row."""
    path = next(p for p, r in candidates if r is current)
    others = sorted(Path(p).name for p, r in candidates if r is not current and p is not None)
    row["result_file"] = str(path) if path is not None else None
    row["other_files"] = "; ".join(others)
    if others and path is not None:
        _add_note(row, f"current file {Path(path).name} (also: {', '.join(others)})")


def _hide_not_run(report: Report) -> None:
    """--measured-only: move the rows without a result to `report.hidden` (still counted)."""
    report.hidden = [row for row in report.rows if row["result_status"] is None]
    report.rows = [row for row in report.rows if row["result_status"] is not None]


def _report_rows(manifest: Manifest, grouped: dict, selected: list[str] | None, tolerance: float) -> list[dict]:
    """One row per (model, protocol) in document order, each with its heading group's number."""
    rows: list[dict] = []
    group = -1
    previous_key = None
    for entry in manifest.entries:
        # A group is a run of rows under one heading of one document (documents may repeat a
        # dataset heading in another section; each run keeps its own place).
        key = (entry.method, entry.document, entry.section, entry.table)
        if key != previous_key:
            group += 1
            previous_key = key
        if selected is not None and entry.id not in selected:
            continue
        measured = [protocol for (model_id, protocol) in grouped if model_id == entry.id]
        for protocol in _entry_protocols(entry, measured):
            row = _row(entry, protocol, grouped.get((entry.id, protocol), []), tolerance)
            row["group"] = group
            row["mark"] = STATUS_MARKS[row["status"]]
            rows.append(row)
    return rows


def build_report(
    manifest: Manifest,
    results: Iterable[EvalResult] | str | os.PathLike,
    tolerance: float = DEFAULT_TOLERANCE,
    ids: Sequence[str] | None = None,
    measured_only: bool = False,
) -> Report:
    """Documented vs measured mIoU, one row per (manifest model, protocol), in document order.

    `results` is a list of `EvalResult` or a folder of result files (a damaged file is named
    in `Report.notes` and skipped). `ids` (ids or aliases) restricts the report to those models
    and asks the renderers for their per-class IoU; an unknown id raises the manifest's
    `UnknownModelError`. Every row is kept, whatever share of them has a result (a script reading
    the table sees the same rows as the work progresses); `measured_only` keeps only the rows
    with a result, the others counted in `Report.hidden`.
    """
    tolerance = float(tolerance)
    if not tolerance >= 0:  # also catches NaN
        raise ReproError(f"--tolerance must be a number >= 0, got {tolerance}")
    found, notes = load_report_results(results) if isinstance(results, (str, os.PathLike)) else (
        [(None, result) for result in results], [])
    grouped = _group_results(found)

    selected: list[str] | None = None
    if ids:
        wanted = {manifest.get(model_id).id for model_id in ids}  # UnknownModelError on typos
        selected = [entry.id for entry in manifest.entries if entry.id in wanted]

    report = Report(
        rows=_report_rows(manifest, grouped, selected, tolerance),
        tolerance=tolerance,
        ids=list(selected) if selected is not None else [],
        notes=notes,
        results=len(found),
        unmatched_results=sorted({model_id for (model_id, _) in grouped} - {entry.id for entry in manifest.entries}),
    )
    if measured_only:
        _hide_not_run(report)
    return report


# --------------------------------------------------------------------------------------------
# Summaries shared by the renderers


def all_rows(report: Report) -> list[dict]:
    """The rows shown and the rows --measured-only left out: what every count is taken over."""
    return [*report.rows, *report.hidden]


def status_counts(report: Report) -> dict[str, int]:
    """How many rows, shown or not, have each status (every status listed, zeros included)."""
    counts = Counter(row["status"] for row in all_rows(report))
    return {status: counts.get(status, 0) for status in STATUS_MARKS}


def _summary_status(row: dict) -> str:
    """The status a row is counted under in the summary: a row the document leaves blank counts
    as "without a documented value" whether it was run or not (there is nothing to reproduce)."""
    return BLANK_DOC if row["status"] == NOT_RUN and row["documented"] is None else row["status"]


def count_rows(rows: Iterable[dict]) -> dict[str, int]:
    """How many of `rows` the summary counts under each status (all listed, zeros included): the
    one count behind the summary line and the line on the rows not shown."""
    counts = Counter(_summary_status(row) for row in rows)
    return {status: counts.get(status, 0) for status in STATUS_MARKS}


def summary_counts(report: Report) -> dict[str, int]:
    return count_rows(all_rows(report))


def _counted(counts: dict[str, int], always: Sequence[str] = ()) -> list[str]:
    """`3 reproduced ✓`, `17 without a documented value`, ... in STATUS_WORDS order."""
    parts = []
    for status, count in counts.items():
        mark, word = STATUS_MARKS[status], STATUS_WORDS[status]
        if not count and status not in always:
            continue
        parts.append(f"{count} {word} {mark}" if mark != word and status != BLANK_DOC else f"{count} {word}")
    return parts


def hidden_line(report: Report) -> str | None:
    """E.g. `Not shown: 65 not run —, 17 without a documented value (--all-rows shows them).`: the
    rows --measured-only left out, in the summary's words and counts; None when none is hidden."""
    if not report.hidden:
        return None
    return f"Not shown: {', '.join(_counted(count_rows(report.hidden)))} (--all-rows shows them)."


def summary_line(report: Report) -> str:
    """E.g. `Summary: 12 rows: 3 reproduced ✓, 1 failed ✗, 6 not run —, 2 without a documented value.`
    (statuses no row has are left out, but for the first three)."""
    parts = _counted(summary_counts(report), ALWAYS_COUNTED)
    line = f"Summary: {counted(len(all_rows(report)), 'row')}: " + ", ".join(parts) + "."
    if report.unmatched_results:
        line += f" Ignored results of models not in the manifest: {', '.join(report.unmatched_results)}."
    return line


def failed_rows(report: Report) -> list[dict]:
    return report.with_status(FAILED)


def environments(report: Report) -> list[dict[str, str]]:
    """Each distinct environment the results were measured in (ENVIRONMENT_FIELDS as text, "" for
    missing), in order of first appearance, with how many results used it ("results", an int)."""
    counts: Counter[tuple[str, ...]] = Counter()
    for row in report:
        if row["result_status"] is not None:
            counts[tuple("" if row[f] is None else str(row[f]) for f in ENVIRONMENT_FIELDS)] += 1
    return [{**dict(zip(ENVIRONMENT_FIELDS, values)), "results": n} for values, n in counts.items()]


def notes_of(report: Report) -> list[str]:
    """Notes about the files read (a damaged result file, named), one line each."""
    return list(report.notes)


def no_results_line(report: Report, folder: Any) -> str | None:
    """One line for a report that has no result to show (nothing read, no damaged file); else None."""
    if report.results or report.notes:
        return None
    return f"no results in {folder} yet: run `repro eval ID` first, or pass --results DIR"


def tolerance_of(report: Report) -> float:
    return float(report.tolerance)


def tolerance_text(report: Report) -> str:
    text = (
        f"A row reproduces when |Δ| ≤ {tolerance_of(report):.2f}, "
        "Δ = measured (rounded to 2 decimals, as the documents print it) − documented; "
        "✓ within, ✗ outside, — not run."
    )
    if report.with_status(UPSTREAM_NOW):
        text += " upstream-now: outside, but within the tolerance of upstream's current number (Upstream now)."
    return text


def strict_failure(report: Report) -> ReproError | None:
    """The error `--strict` exits with when a compared row is outside tolerance, else None."""
    failed = failed_rows(report)
    if not failed:
        return None
    listed = [f"{r['model_id']} ({r['protocol']}) Δ {r['delta'] + 0.0:+.2f}" for r in failed[:5]]
    more = f", and {len(failed) - 5} more" if len(failed) > 5 else ""
    return ReproError(
        f"{counted(len(failed), 'row')} outside tolerance ±{tolerance_of(report):.2f}: " + ", ".join(listed) + more
    )
