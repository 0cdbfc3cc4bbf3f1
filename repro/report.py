"""Documented vs measured: the table a researcher pastes into a README or an issue.

`build_report` joins the manifest (what the model-zoo documents print) with result files (what
`repro eval` measured) into one pandas table, one row per (model, protocol), in document order.
The renderers turn that table into GitHub markdown, CSV, JSON or a self-contained HTML page;
`plot_deltas` draws Δ per row against the tolerance band.

Comparison rule: the documents print mIoU in percent with 2 decimals, so the measured value is
rounded to 2 decimals first (the result file's `miou_rounded`, else Python's correctly rounded
`format(miou, ".2f")`), and Δ = rounded measured − documented is computed in decimal arithmetic.
A row reproduces when |Δ| <= tolerance; the edge is exact (Δ = 0.10 passes a 0.1 tolerance,
0.11 fails), free of binary floating-point noise.

Where a measured number misses the document but matches upstream's current number for the row
(the manifest's `upstream_now`), the row is "upstream-now" rather than failed: upstream changed
the number (most likely the file behind the URL) since the document was written. Each row also
says which forward (`variant`) produced its number.
"""

from __future__ import annotations

import html
import io
import json
import os
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from repro.errors import ReproError
from repro.results import EvalResult, load_results
from repro.status import choose_result, default_variant, partial_note, result_variant

if TYPE_CHECKING:  # only for type hints
    from repro.manifest import Manifest, ModelEntry

DEFAULT_TOLERANCE = 0.1
# Without --measured-only / --all-rows, rows without a result are left out when fewer than this
# share of the rows has one.
AUTO_MEASURED_ONLY = 0.10
PROTOCOL_ORDER = ("single", "flip", "ms+flip")
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
    BLANK_DOC: "blank-doc",
    SERVER: "server",
    PARTIAL: "partial",
    NON_COMPARABLE: "non-comparable",
    UPSTREAM_NOW: "upstream-now",
}


ENVIRONMENT_FIELDS = ("device", "torch_version", "cuda_version", "repro_version", "git_commit")
ENVIRONMENT_LABELS = {
    "device": "Device",
    "torch_version": "torch",
    "cuda_version": "CUDA",
    "repro_version": "repro",
    "git_commit": "commit",
}

# Every column of the frame build_report returns, in order.
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
    "documented",  # percent, 2 decimals as printed; NaN where the document leaves it blank
    "upstream_now",  # upstream's current number for the row (manifest upstream_now); NaN if none
    "upstream_now_date",
    "upstream_now_commit",
    "measured",  # percent, full precision from the result file
    "measured_rounded",  # percent, 2 decimals: the value compared
    "delta",  # measured_rounded - documented; NaN where not compared
    "status",  # one of STATUS_MARKS' keys
    "mark",  # the status as the tables show it
    "note",  # why a row is not compared, the submission zip, ...
    "result_status",  # complete | partial | server; None when not run
    "variant",  # the forward that produced the number (training-era | upstream-head); None when not run
    "default_variant",  # the row's default forward
    "precision",
    "num_images",
    "num_images_total",
    "limit",
    "submission",
    *ENVIRONMENT_FIELDS,
    "per_class_iou",  # {class name: IoU percent or None}; None when not run
]

# What the human-facing tables show: (frame column, heading).
DISPLAY_COLUMNS = [
    ("model_id", "Model"),
    ("head", "Head"),
    ("backbone", "Backbone"),
    ("protocol", "Protocol"),
    ("documented", "Documented"),
    ("upstream_now", "Upstream now"),
    ("measured_rounded", "Measured"),
    ("delta", "Δ"),
    ("mark", "Status"),
    ("variant", "Variant"),
    ("note", "Notes"),
]

_CENT = Decimal("0.01")


# --------------------------------------------------------------------------------------------
# Building the table


def load_report_results(results_dir: str | os.PathLike) -> list[EvalResult]:
    """The result files of a folder; a missing folder is an error, an empty one is fine.

    An empty folder gives an all-"not run" report, which is a valid answer before any `repro
    eval`; a folder that does not exist is more likely a typo, so it is reported as one.
    """
    folder = Path(results_dir)
    if not folder.exists():
        raise ReproError(
            f"results folder {folder} does not exist (run `repro eval` first, or pass --results DIR)"
        )
    if not folder.is_dir():
        raise ReproError(f"--results {folder} is a file, not a folder of result files")
    return load_results(folder)  # a corrupt file raises ReproError naming it


def _as_decimal(value: float | None) -> Decimal | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number != number:  # NaN
        return None
    # format() rounds the exact binary value correctly, as the documents' 2-decimal print does.
    try:
        return Decimal(format(number, ".2f"))
    except InvalidOperation:  # inf
        return None


def measured_rounded(result: EvalResult) -> Decimal | None:
    """The measured mIoU at the documents' precision (2 decimals, percent)."""
    if result.miou_rounded is not None:
        return _as_decimal(result.miou_rounded)
    return _as_decimal(result.miou)


def compare(measured: Decimal, documented: Decimal, tolerance: float) -> tuple[Decimal, bool]:
    """(Δ, within tolerance) in exact decimal arithmetic: |Δ| <= tolerance passes."""
    delta = (measured - documented).quantize(_CENT)
    return delta, abs(delta) <= Decimal(repr(float(tolerance)))


def _ordered_protocols(names: Iterable[str]) -> list[str]:
    """Canonical protocol order (single, flip, ms+flip), anything else after, alphabetically."""
    unique = list(dict.fromkeys(names))
    known = [p for p in PROTOCOL_ORDER if p in unique]
    return known + sorted(p for p in unique if p not in PROTOCOL_ORDER)


def _entry_protocols(entry: ModelEntry, measured: Iterable[str]) -> list[str]:
    """The documented protocols of an entry plus any protocol a result file exists for."""
    return _ordered_protocols([*entry.documented.keys(), *measured])


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


def _group_results(results: Iterable[EvalResult]) -> dict[tuple[str, str], list[EvalResult]]:
    grouped: dict[tuple[str, str], list[EvalResult]] = {}
    for result in results:
        grouped.setdefault((result.model_id, result.protocol), []).append(result)
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
        "documented": float(documented) if documented is not None else float("nan"),
        "upstream_now": float(now_value) if now_value is not None else float("nan"),
        "upstream_now_date": _text_or_none(now, "date") if now_value is not None else None,
        "upstream_now_commit": _text_or_none(now, "commit") if now_value is not None else None,
        "measured": float("nan"),
        "measured_rounded": float("nan"),
        "delta": float("nan"),
        "note": "",
        "result_status": None,
        "variant": None,
        "default_variant": default_variant(entry),
        "precision": None,
        "num_images": None,
        "num_images_total": None,
        "limit": None,
        "submission": None,
        **{field: None for field in ENVIRONMENT_FIELDS},
        "per_class_iou": None,
    }


def _text_or_none(record: Any, field: str) -> str | None:
    value = getattr(record, field, None)
    return str(value) if value not in (None, "") else None


def _fill_measured(row: dict, result: EvalResult) -> None:
    rounded = measured_rounded(result)
    row.update(
        measured=float(result.miou) if result.miou is not None else float("nan"),
        measured_rounded=float(rounded) if rounded is not None else float("nan"),
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
    if result.precision != "fp32":
        return NON_COMPARABLE, f"{result.precision}, not compared (documents are fp32)"
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


def _row(
    entry: ModelEntry, protocol: str, candidates: Sequence[EvalResult], tolerance: float
) -> dict:
    row = _base_row(entry, protocol)
    if not candidates:
        row["status"] = NOT_RUN
        if entry.eval == "server":
            row["note"] = "scored by the benchmark server"
        return row
    result, others = choose_result(candidates, row["default_variant"])
    _fill_measured(row, result)
    _judge(row, entry, result, others, tolerance)
    if row["variant"] != row["default_variant"] and row["status"] != NOT_RUN:
        _add_note(row, f"{row['variant']} forward, not this row's default ({row['default_variant']})")
    return row


def _hide_not_run(frame: pd.DataFrame, measured_only: bool | None, ids: list[str] | None) -> pd.DataFrame:
    """Drop the rows without a result when asked, or (None: automatic) when only a few have one.

    Automatic: without ids, when some but fewer than AUTO_MEASURED_ONLY of the rows have a result
    (a smoke test should not print 85 rows for one number).
    """
    has_result = frame["result_status"].notna()
    if measured_only is None:
        share = has_result.sum() / len(frame) if len(frame) else 0.0
        measured_only = not ids and 0 < share < AUTO_MEASURED_ONLY
    if not measured_only:
        return frame
    shown = frame[has_result].reset_index(drop=True)
    shown.attrs["hidden_not_run"] = int((~has_result).sum())
    return shown


def build_report(
    manifest: Manifest,
    results: Iterable[EvalResult] | str | os.PathLike,
    tolerance: float = DEFAULT_TOLERANCE,
    ids: Sequence[str] | None = None,
    measured_only: bool | None = False,
) -> pd.DataFrame:
    """Documented vs measured mIoU, one row per (manifest model, protocol), in document order.

    `results` is a list of `EvalResult` or a folder of result files. `ids` (ids or aliases)
    restricts the report to those models and asks the renderers for their per-class IoU; an
    unknown id raises the manifest's `UnknownModelError`. `measured_only` keeps only the rows
    with a result (None: automatically, when fewer than 10% of the rows have one). The frame has
    `REPORT_COLUMNS`; `frame.attrs` carries `tolerance`, `ids`, `unmatched_results` (result
    files of models the manifest does not list) and `hidden_not_run` (rows left out).
    """
    tolerance = float(tolerance)
    if not tolerance >= 0:  # also catches NaN
        raise ReproError(f"--tolerance must be a number >= 0, got {tolerance}")
    if isinstance(results, (str, os.PathLike)):
        results = load_report_results(results)
    grouped = _group_results(results)

    selected: list[str] | None = None
    if ids:
        wanted = {manifest.get(model_id).id for model_id in ids}  # UnknownModelError on typos
        selected = [entry.id for entry in manifest.entries if entry.id in wanted]

    rows: list[dict] = []
    group = -1
    previous_key = None
    known_ids = set()
    for entry in manifest.entries:
        known_ids.add(entry.id)
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

    frame = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    for column in ("documented", "upstream_now", "measured", "measured_rounded", "delta"):
        frame[column] = frame[column].astype("float64")
    frame = _hide_not_run(frame, measured_only, selected)
    frame.attrs["tolerance"] = tolerance
    frame.attrs["ids"] = list(selected) if selected is not None else []
    frame.attrs["unmatched_results"] = sorted(
        {model_id for (model_id, _) in grouped if model_id not in known_ids}
    )
    frame.attrs.setdefault("hidden_not_run", 0)
    return frame


# --------------------------------------------------------------------------------------------
# Summaries shared by the renderers


def status_counts(frame: pd.DataFrame) -> dict[str, int]:
    """How many rows have each status (every status listed, zeros included; hidden rows count as not run)."""
    counts = frame["status"].value_counts()
    out = {status: int(counts.get(status, 0)) for status in STATUS_MARKS}
    out[NOT_RUN] += hidden_not_run(frame)
    return out


def hidden_not_run(frame: pd.DataFrame) -> int:
    """How many rows without a result `--measured-only` (or its automatic form) left out."""
    return int(frame.attrs.get("hidden_not_run", 0) or 0)


def hidden_line(frame: pd.DataFrame) -> str | None:
    """One line saying how many rows are not shown and how to show them; None when none are hidden."""
    hidden = hidden_not_run(frame)
    if not hidden:
        return None
    return f"{hidden} row{'s' if hidden != 1 else ''} not run (repro report --all-rows to show them)."


def summary_line(frame: pd.DataFrame) -> str:
    """E.g. `Summary: 12 rows: 3 reproduced ✓, 1 failed ✗, 6 not run —, 1 blank-doc, ...`."""
    counts = status_counts(frame)
    parts = []
    for status, count in counts.items():
        mark = STATUS_MARKS[status]
        word = STATUS_WORDS[status]
        if status == UPSTREAM_NOW and not count:
            continue  # only rows of replaced files can have it: not worth a "0" in every summary
        parts.append(f"{count} {word} {mark}" if mark != word else f"{count} {word}")
    line = f"Summary: {len(frame) + hidden_not_run(frame)} rows: " + ", ".join(parts) + "."
    unmatched = frame.attrs.get("unmatched_results") or []
    if unmatched:
        line += f" Ignored results of models not in the manifest: {', '.join(unmatched)}."
    return line


def failed_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == FAILED]


def environments(frame: pd.DataFrame) -> pd.DataFrame:
    """Each distinct environment the results were measured in, with how many results used it."""
    measured = frame[frame["result_status"].notna()]
    columns = list(ENVIRONMENT_FIELDS)
    if measured.empty:
        return pd.DataFrame(columns=[*columns, "results"])
    envs = (
        measured[columns]
        .fillna("")
        .astype(str)
        .groupby(columns, sort=False)
        .size()
        .reset_index(name="results")
    )
    return envs


def _tolerance(frame: pd.DataFrame) -> float:
    return float(frame.attrs.get("tolerance", DEFAULT_TOLERANCE))


def _tolerance_text(frame: pd.DataFrame) -> str:
    text = (
        f"A row reproduces when |Δ| ≤ {_tolerance(frame):.2f}, "
        "Δ = measured (rounded to 2 decimals, as the documents print it) − documented; "
        "✓ within, ✗ outside, — not run."
    )
    if (frame["status"] == UPSTREAM_NOW).any():
        text += " upstream-now: outside, but within the tolerance of upstream's current number (Upstream now)."
    return text


def _headed_groups(frame: pd.DataFrame) -> list[tuple[list[tuple[int, str]], str, pd.DataFrame]]:
    """Per document table, in document order: (new headings as (level, text), table, rows).

    Headings mirror the documents: the method (level 2) and the section (level 3) are emitted
    when they change, the dataset table (level 4) for every group.
    """
    out = []
    current: tuple[str, str] | None = None
    for _, rows in frame.groupby("group", sort=True):
        method, title, section, table = (str(rows[c].iloc[0]) for c in ("method", "document", "section", "table"))
        headings = []
        if current is None or current[0] != method:
            headings.append((2, title))
        if current is None or current != (method, section):
            headings.append((3, section))
        current = (method, section)
        out.append((headings, table, rows))
    return out


def _number(value: float, signed: bool = False) -> str:
    if value is None or pd.isna(value):
        return ""
    return f"{value + 0.0:+.2f}" if signed else f"{value:.2f}"


def display_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The human-facing columns of `rows`, as the text the tables show."""
    shown = pd.DataFrame(index=rows.index)
    for column, heading in DISPLAY_COLUMNS:
        values = rows[column]
        if column in ("documented", "upstream_now", "measured_rounded"):
            shown[heading] = values.map(_number)
        elif column == "delta":
            shown[heading] = values.map(lambda v: _number(v, signed=True))
        else:
            shown[heading] = values.fillna("").astype(str)
    return shown.reset_index(drop=True)


def per_class_frame(per_class_iou: dict[str, float | None]) -> pd.DataFrame:
    """Class and IoU, worst first; classes without an IoU (absent from the split) last."""
    table = pd.DataFrame(
        {"class": list(per_class_iou.keys()), "iou": pd.array(list(per_class_iou.values()), dtype="Float64")}
    )
    table["order"] = range(len(table))  # ties keep the dataset's class order
    table = table.sort_values(["iou", "order"], na_position="last", kind="stable")
    return table.drop(columns="order").reset_index(drop=True)


def _per_class_sections(frame: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame | None]]:
    """(model id, protocol, per-class table or None when nothing was measured) for `ids`."""
    sections = []
    for model_id in frame.attrs.get("ids") or []:
        has_classes = frame["per_class_iou"].map(lambda v: isinstance(v, dict) and len(v) > 0)
        rows = frame[(frame["model_id"] == model_id) & has_classes]
        if rows.empty:
            sections.append((model_id, "", None))
        for _, row in rows.iterrows():
            sections.append((model_id, row["protocol"], per_class_frame(row["per_class_iou"])))
    return sections


def _want_per_class(frame: pd.DataFrame, per_class: bool | None) -> bool:
    return bool(frame.attrs.get("ids")) if per_class is None else per_class


# --------------------------------------------------------------------------------------------
# Markdown


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: pd.DataFrame, align: Sequence[str] | None = None) -> str:
    """A GitHub pipe table of a frame of strings."""
    align = align or [":-"] * len(table.columns)
    lines = [
        "| " + " | ".join(_md_cell(c) for c in table.columns) + " |",
        "| " + " | ".join(align) + " |",
    ]
    for values in table.itertuples(index=False):
        lines.append("| " + " | ".join(_md_cell(v) for v in values) + " |")
    return "\n".join(lines)


_MD_ALIGN = [":-", ":-", ":-", ":-", "-:", "-:", "-:", "-:", ":-:", ":-", ":-"]


def render_markdown(frame: pd.DataFrame, *, per_class: bool | None = None) -> str:
    """GitHub markdown: a heading per method and per document table, one pipe table each."""
    out = ["# Documented vs measured mIoU", "", _tolerance_text(frame), "", summary_line(frame), ""]
    if hidden_line(frame):
        out += [hidden_line(frame), ""]
    for headings, table, rows in _headed_groups(frame):
        for level, text in headings:
            out += ["#" * level + " " + text, ""]
        out += [f"#### {table}", "", markdown_table(display_frame(rows), _MD_ALIGN), ""]

    out += ["## Environment", ""]
    envs = environments(frame)
    if envs.empty:
        out += ["No results yet.", ""]
    else:
        shown = envs.rename(columns={**ENVIRONMENT_LABELS, "results": "Results"}).astype(str)
        out += [markdown_table(shown), ""]

    if _want_per_class(frame, per_class):
        for model_id, protocol, table in _per_class_sections(frame):
            if table is None:
                out += [f"## Per-class IoU: {model_id}", "", "No per-class IoU in the results of this model.", ""]
                continue
            shown = pd.DataFrame(
                {"Class": table["class"], "IoU": [_number(v) if not pd.isna(v) else "n/a" for v in table["iou"]]}
            )
            out += [
                f"## Per-class IoU: {model_id} ({protocol})",
                "",
                "Worst classes first; n/a: the class is neither in the labels nor predicted.",
                "",
                markdown_table(shown, [":-", "-:"]),
                "",
            ]
    return "\n".join(out).rstrip("\n") + "\n"


# --------------------------------------------------------------------------------------------
# CSV / JSON


def render_csv(frame: pd.DataFrame) -> str:
    """Every column but the per-class dictionary (use JSON for that), one line per row."""
    return frame.drop(columns=["per_class_iou"]).to_csv(index=False)


def render_json(frame: pd.DataFrame) -> str:
    """A list of records, one per row, every column (missing numbers are null)."""
    records = json.loads(frame.to_json(orient="records", double_precision=15, force_ascii=False))
    return json.dumps(records, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------------------------
# HTML

_HTML_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em; color: #1f2328; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.reproduced { color: #1a7f37; font-weight: bold; }
.failed { color: #cf222e; font-weight: bold; }
.not-run { color: #8c959f; }
.summary { font-weight: bold; }
"""

_HTML_NUMERIC = {"Documented", "Upstream now", "Measured", "Δ", "IoU", "Results"}


def _html_table(table: pd.DataFrame, status_slugs: Sequence[str] | None = None) -> str:
    """An escaped HTML table; status cells carry their slug as a class for colouring."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = []
    for i, values in enumerate(table.itertuples(index=False)):
        cells = []
        for column, value in zip(table.columns, values):
            css = []
            if column in _HTML_NUMERIC:
                css.append("num")
            if column == "Status" and status_slugs is not None:
                css.append(status_slugs[i])
            attr = f' class="{" ".join(css)}"' if css else ""
            cells.append(f"<td{attr}>{html.escape(str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def render_html(frame: pd.DataFrame, *, per_class: bool | None = None, plot_svg: str | None = None) -> str:
    """One self-contained page (inline CSS, no scripts, no external assets).

    `plot_svg` (the text of an SVG, e.g. from `plot_deltas(frame, buffer, fmt="svg")`) is
    embedded inline when given.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<title>Documented vs measured mIoU</title>",
        f"<style>{_HTML_STYLE}</style>",
        "</head>",
        "<body>",
        "<h1>Documented vs measured mIoU</h1>",
        f"<p>{html.escape(_tolerance_text(frame))}</p>",
        f'<p class="summary">{html.escape(summary_line(frame))}</p>',
    ]
    if hidden_line(frame):
        parts.append(f"<p>{html.escape(hidden_line(frame))}</p>")
    for headings, table, rows in _headed_groups(frame):
        for level, text in headings:
            parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
        parts.append(f"<h4>{html.escape(table)}</h4>")
        parts.append(_html_table(display_frame(rows), list(rows["status"])))

    parts.append("<h2>Environment</h2>")
    envs = environments(frame)
    if envs.empty:
        parts.append("<p>No results yet.</p>")
    else:
        parts.append(_html_table(envs.rename(columns={**ENVIRONMENT_LABELS, "results": "Results"})))

    if plot_svg:
        start = plot_svg.find("<svg")  # drop the XML prolog and doctype: inline SVG needs neither
        parts += ["<h2>Δ per model</h2>", plot_svg[start:] if start >= 0 else plot_svg]

    if _want_per_class(frame, per_class):
        for model_id, protocol, table in _per_class_sections(frame):
            if table is None:
                parts.append(f"<h2>Per-class IoU: {html.escape(model_id)}</h2>")
                parts.append("<p>No per-class IoU in the results of this model.</p>")
                continue
            shown = pd.DataFrame(
                {"Class": table["class"], "IoU": [_number(v) if not pd.isna(v) else "n/a" for v in table["iou"]]}
            )
            parts.append(f"<h2>Per-class IoU: {html.escape(model_id)} ({html.escape(protocol)})</h2>")
            parts.append("<p>Worst classes first; n/a: the class is neither in the labels nor predicted.</p>")
            parts.append(_html_table(shown))
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# Plot


_PLOT_COLOURS = {REPRODUCED: "#1a7f37", FAILED: "#cf222e", UPSTREAM_NOW: "#bc4c00"}
# Why measured rows are left out of the plot, per status.
_NOT_PLOTTED = {
    PARTIAL: "partial (--limit or a subset: not compared)",
    NON_COMPARABLE: "non-comparable (another split or precision)",
    SERVER: "scored by the benchmark server",
    BLANK_DOC: "without a documented value",
    NOT_RUN: "without an mIoU",
}


def plot_empty_reason(frame: pd.DataFrame) -> str | None:
    """One line saying why the Δ plot has no points; None when it has some."""
    if frame["status"].isin(COMPARED).any():
        return None
    measured = frame[frame["result_status"].notna()]
    if measured.empty:
        return "the plot is empty: no results yet (run `repro eval` first)"
    counts = measured["status"].value_counts()
    if len(counts) == 1:
        status, count = next(iter(counts.items()))
        every = "the only result is" if count == 1 else f"all {count} results are"
        return f"the plot is empty: {every} {_NOT_PLOTTED[status]}"
    parts = [f"{int(counts[s])} {_NOT_PLOTTED[s]}" for s in _NOT_PLOTTED if s in counts]
    return "the plot is empty: no result is compared (" + "; ".join(parts) + ")"


def plot_deltas(frame: pd.DataFrame, target: str | os.PathLike | io.IOBase, fmt: str | None = None) -> None:
    """Δ of every compared row against the ±tolerance band, as PNG or SVG (by extension or `fmt`).

    Uses matplotlib's object API with the Agg canvas: headless, and pyplot's global backend is
    left alone.
    """
    if fmt is None:
        fmt = Path(os.fspath(target)).suffix.lower().lstrip(".") if not isinstance(target, io.IOBase) else "png"
    if fmt not in ("png", "svg"):
        raise ReproError(f"--plot {target}: the plot is written as .png or .svg, not .{fmt}")

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tolerance = _tolerance(frame)
    compared = frame[frame["status"].isin(COMPARED)]
    labels = [f"{m} · {p}" for m, p in zip(compared["model_id"], compared["protocol"])]
    deltas = compared["delta"].to_list()

    height = max(2.5, 0.32 * len(labels) + 1.4)
    figure = Figure(figsize=(9, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.axvspan(-tolerance, tolerance, color="#2da44e", alpha=0.15, label=f"±{tolerance:.2f} tolerance")
    axes.axvline(0.0, color="#57606a", linewidth=0.8)
    if labels:
        positions = list(range(len(labels)))[::-1]  # first row on top, as in the tables
        colours = [_PLOT_COLOURS[s] for s in compared["status"]]
        axes.scatter(deltas, positions, c=colours, zorder=3)
        axes.set_yticks(positions, labels, fontsize=8)
        limit = max([tolerance * 1.5, *[abs(d) * 1.1 for d in deltas]])
        axes.set_xlim(-limit, limit)
    else:
        axes.set_yticks([])
        reason = plot_empty_reason(frame) or "no compared rows"
        axes.text(0.5, 0.5, reason, transform=axes.transAxes, ha="center", va="center", wrap=True)
        axes.set_xlim(-max(tolerance * 1.5, 0.1), max(tolerance * 1.5, 0.1))
    axes.set_xlabel("Δ mIoU (measured − documented, points)")
    axes.set_title("Documented vs measured mIoU")
    axes.legend(loc="lower right", fontsize=8)

    metadata = {"Date": None} if fmt == "svg" else None  # reproducible SVG bytes
    if isinstance(target, io.IOBase):
        figure.savefig(target, format=fmt, metadata=metadata)
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format=fmt, metadata=metadata)


def plot_svg_text(frame: pd.DataFrame) -> str:
    buffer = io.BytesIO()
    plot_deltas(frame, buffer, fmt="svg")
    return buffer.getvalue().decode("utf-8")


# --------------------------------------------------------------------------------------------
# One entry point for the CLI and scripts

RENDERERS = {"md": render_markdown, "csv": render_csv, "json": render_json, "html": render_html}


def render(frame: pd.DataFrame, fmt: str = "md") -> str:
    if fmt not in RENDERERS:
        raise ReproError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")
    return RENDERERS[fmt](frame)


def format_for_output(path: str | os.PathLike | None) -> str:
    """The format an --output file's extension asks for (md when it says nothing known)."""
    if path is None:
        return "md"
    suffix = Path(path).suffix.lower().lstrip(".")
    aliases = {"markdown": "md", "htm": "html"}
    suffix = aliases.get(suffix, suffix)
    return suffix if suffix in FORMATS else "md"


def strict_failure(frame: pd.DataFrame) -> ReproError | None:
    """The error `--strict` exits with when a compared row is outside tolerance, else None."""
    failed = failed_rows(frame)
    if failed.empty:
        return None
    listed = [f"{r.model_id} ({r.protocol}) Δ {_number(r.delta, signed=True)}" for r in failed.head(5).itertuples()]
    more = f", and {len(failed) - 5} more" if len(failed) > 5 else ""
    return ReproError(
        f"{len(failed)} row(s) outside tolerance ±{_tolerance(frame):.2f}: " + ", ".join(listed) + more
    )
