"""How `repro report` shows the table `repro.report.build_report` builds: GitHub markdown, CSV,
JSON, a self-contained HTML page, and the Δ plot. The columns people read are declared once,
in `repro.report.DISPLAY_COLUMNS`; every renderer takes its headings, alignment and number
format from there.

Links from the HTML page: `render_html(report, row_link=...)` takes a function of a report row
(a dict) that returns an address (or None); the row's Model cell links there (e.g. an explain page).

Standard library only (csv, json, html): pandas is not needed to print a report.
"""

from __future__ import annotations

import csv
import html
import io
import itertools
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from repro.errors import ReproError
from repro.report.table import (
    BLANK_DOC, COMPARED, DISPLAY_COLUMNS, ENVIRONMENT_FIELDS, ENVIRONMENT_LABELS, FAILED, FORMATS, NON_COMPARABLE,
    NOT_RUN, PARTIAL, REPORT_COLUMNS, REPRODUCED, SERVER, UPSTREAM_NOW, Report, environments, hidden_line, notes_of,
    summary_line, tolerance_of, tolerance_text,
)
from repro.text import two_decimals

RowLink = Callable[[dict], "str | None"]  # a report row -> the address its Model cell links to
Table = tuple[list[str], list[list[str]]]  # (headings, rows of cell texts)


# --------------------------------------------------------------------------------------------
# Shared by the renderers


def _headed_groups(report: Report) -> list[tuple[list[tuple[int, str]], str, list[dict]]]:
    """Per document table, in document order: (new headings as (level, text), table, rows).

    Headings mirror the documents: the method (level 2) and the section (level 3) are emitted
    when they change, the dataset table (level 4) for every group.
    """
    out = []
    current: tuple[str, str] | None = None
    ordered = sorted(report.rows, key=lambda row: row["group"])  # stable: document order within a group
    for _, grouped in itertools.groupby(ordered, key=lambda row: row["group"]):
        rows = list(grouped)
        method, title, section, table = (str(rows[0][c]) for c in ("method", "document", "section", "table"))
        headings = []
        if current is None or current[0] != method:
            headings.append((2, title))
        if current is None or current != (method, section):
            headings.append((3, section))
        current = (method, section)
        out.append((headings, table, rows))
    return out


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))



def display_rows(rows: Sequence[dict]) -> Table:
    """The human-facing columns of `rows` (DISPLAY_COLUMNS), as the text the tables show."""
    headings = [column.heading for column in DISPLAY_COLUMNS]
    cells = [
        [_cell_number(row[c.field], signed=c.signed) if c.numeric else _cell_text(row[c.field]) for c in DISPLAY_COLUMNS]
        for row in rows
    ]
    return headings, cells


def _cell_number(value: float | None, signed: bool = False) -> str:
    """A number cell: 2 decimals, empty when missing (None or NaN)."""
    return "" if _missing(value) else two_decimals(value, signed)


def _cell_text(value: object) -> str:
    """A cell as text; missing values (None, NaN) are empty."""
    return "" if _missing(value) else str(value)


def _notes_lines(report: Report) -> list[str]:
    """The notes on the files read, and how many rows are hidden, one sentence each."""
    hidden = hidden_line(report)
    return [*(f"Note: {note}" for note in notes_of(report)), *([hidden] if hidden else [])]


def per_class_order(per_class_iou: dict[str, float | None]) -> list[tuple[str, float | None]]:
    """(class, IoU), worst first; classes without an IoU (absent from the split) last; ties keep
    the dataset's class order."""
    items = list(per_class_iou.items())
    return sorted(items, key=lambda item: (_missing(item[1]), 0.0 if _missing(item[1]) else item[1]))


def _per_class_table(per_class_iou: dict[str, float | None]) -> Table:
    rows = [[name, "n/a" if _missing(iou) else _cell_number(iou)] for name, iou in per_class_order(per_class_iou)]
    return ["Class", "IoU"], rows


def _per_class_sections(report: Report) -> list[tuple[str, str, Table | None]]:
    """(model id, protocol, per-class table or None when nothing was measured) for `ids`."""
    sections = []
    for model_id in report.ids:
        rows = [r for r in report if r["model_id"] == model_id and isinstance(r["per_class_iou"], dict) and r["per_class_iou"]]
        if not rows:
            sections.append((model_id, "", None))
        for row in rows:
            sections.append((model_id, row["protocol"], _per_class_table(row["per_class_iou"])))
    return sections


def _want_per_class(report: Report, per_class: bool | None) -> bool:
    return bool(report.ids) if per_class is None else per_class


def _environment_table(report: Report) -> Table | None:
    envs = environments(report)
    if not envs:
        return None
    headings = [*(ENVIRONMENT_LABELS[f] for f in ENVIRONMENT_FIELDS), "Results"]
    return headings, [[*(env[f] for f in ENVIRONMENT_FIELDS), str(env["results"])] for env in envs]


# --------------------------------------------------------------------------------------------
# Markdown


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table, align: Sequence[str] | None = None) -> str:
    """A GitHub pipe table of (headings, rows of cell texts)."""
    headings, rows = table
    align = align or [":-"] * len(headings)
    lines = [
        "| " + " | ".join(_md_cell(c) for c in headings) + " |",
        "| " + " | ".join(align) + " |",
    ]
    for values in rows:
        lines.append("| " + " | ".join(_md_cell(v) for v in values) + " |")
    return "\n".join(lines)


_MD_ALIGNS = {"left": ":-", "right": "-:", "center": ":-:"}
_MD_ALIGN = [_MD_ALIGNS[column.align] for column in DISPLAY_COLUMNS]


def render_markdown(report: Report, *, per_class: bool | None = None) -> str:
    """GitHub markdown: a heading per method and per document table, one pipe table each."""
    out = ["# Documented vs measured mIoU", "", tolerance_text(report), "", summary_line(report), ""]
    for line in _notes_lines(report):
        out += [line, ""]
    for headings, table, rows in _headed_groups(report):
        for level, text in headings:
            out += ["#" * level + " " + text, ""]
        out += [f"#### {table}", "", markdown_table(display_rows(rows), _MD_ALIGN), ""]

    out += ["## Environment", ""]
    envs = _environment_table(report)
    out += ["No results yet." if envs is None else markdown_table(envs), ""]

    if _want_per_class(report, per_class):
        for model_id, protocol, table in _per_class_sections(report):
            if table is None:
                out += [f"## Per-class IoU: {model_id}", "", "No per-class IoU in the results of this model.", ""]
                continue
            out += [
                f"## Per-class IoU: {model_id} ({protocol})",
                "",
                "Worst classes first; n/a: the class is neither in the labels nor predicted.",
                "",
                markdown_table(table, [":-", "-:"]),
                "",
            ]
    return "\n".join(out).rstrip("\n") + "\n"


# --------------------------------------------------------------------------------------------
# CSV / JSON


_CSV_COLUMNS = [column for column in REPORT_COLUMNS if column != "per_class_iou"]


def render_csv(report: Report) -> str:
    """Every column but the per-class dictionary (use JSON for that), one line per row; missing
    values are empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for row in report:
        writer.writerow(["" if _missing(row[c]) else row[c] for c in _CSV_COLUMNS])
    return buffer.getvalue()


def _json_safe(value: object) -> object:
    """NaN (e.g. a per-class IoU) as null: JSON has no NaN."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    return None if _missing(value) else value


def render_json(report: Report) -> str:
    """A list of records, one per row, every column (missing numbers are null)."""
    records = [{column: _json_safe(row[column]) for column in REPORT_COLUMNS} for row in report]
    return json.dumps(records, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


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

_HTML_NUMERIC = {column.heading for column in DISPLAY_COLUMNS if column.numeric} | {"IoU", "Results"}
_LINKED = "Model"  # the cell of a row that `row_link` turns into a link


def _html_cell(column: str, value: object, css: list[str], link: str | None) -> str:
    text = html.escape(str(value))
    if link and column == _LINKED:
        text = f'<a href="{html.escape(link, quote=True)}">{text}</a>'
    attr = f' class="{" ".join(css)}"' if css else ""
    return f"<td{attr}>{text}</td>"


def _html_table(table: Table, status_slugs: Sequence[str] | None = None,
                links: Sequence[str | None] | None = None) -> str:
    """An escaped HTML table; status cells carry their slug as a class for colouring; `links`:
    one address (or None) per row for its Model cell."""
    headings, rows = table
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in headings)
    body = []
    for i, values in enumerate(rows):
        cells = []
        for column, value in zip(headings, values):
            css = ["num"] if column in _HTML_NUMERIC else []
            if column == "Status" and status_slugs is not None:
                css.append(status_slugs[i])
            cells.append(_html_cell(column, value, css, links[i] if links is not None else None))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def render_html(report: Report, *, per_class: bool | None = None, plot_svg: str | None = None,
                row_link: RowLink | None = None, appendix: str = "") -> str:
    """One self-contained page (inline CSS, no scripts, no external assets).

    `plot_svg` (the text of an SVG, e.g. from `plot_deltas(report, buffer, fmt="svg")`) is
    embedded inline when given. `row_link(row)` (a report row) gives the address the row's Model
    cell links to, or None for no link; `appendix` (HTML) ends the page.
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
        f"<p>{html.escape(tolerance_text(report))}</p>",
        f'<p class="summary">{html.escape(summary_line(report))}</p>',
    ]
    parts += [f"<p>{html.escape(line)}</p>" for line in _notes_lines(report)]
    for headings, table, rows in _headed_groups(report):
        for level, text in headings:
            parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
        parts.append(f"<h4>{html.escape(table)}</h4>")
        links = [row_link(row) for row in rows] if row_link is not None else None
        parts.append(_html_table(display_rows(rows), [row["status"] for row in rows], links))

    parts.append("<h2>Environment</h2>")
    envs = _environment_table(report)
    parts.append("<p>No results yet.</p>" if envs is None else _html_table(envs))

    if plot_svg:
        start = plot_svg.find("<svg")  # drop the XML prolog and doctype: inline SVG needs neither
        parts += ["<h2>Δ per model</h2>", plot_svg[start:] if start >= 0 else plot_svg]

    if _want_per_class(report, per_class):
        for model_id, protocol, table in _per_class_sections(report):
            if table is None:
                parts.append(f"<h2>Per-class IoU: {html.escape(model_id)}</h2>")
                parts.append("<p>No per-class IoU in the results of this model.</p>")
                continue
            parts.append(f"<h2>Per-class IoU: {html.escape(model_id)} ({html.escape(protocol)})</h2>")
            parts.append("<p>Worst classes first; n/a: the class is neither in the labels nor predicted.</p>")
            parts.append(_html_table(table))
    if appendix:  # e.g. the explain pages the rows link to (repro.explain.html.report_appendix)
        parts.append(appendix)
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


def plot_empty_reason(report: Report) -> str | None:
    """One line saying why the Δ plot has no points; None when it has some."""
    if report.with_status(*COMPARED):
        return None
    counts = Counter(row["status"] for row in report if row["result_status"] is not None)
    if not counts:
        return "the plot is empty: no results yet (run `repro eval` first)"
    if len(counts) == 1:
        status, count = next(iter(counts.items()))
        every = "the only result is" if count == 1 else f"all {count} results are"
        return f"the plot is empty: {every} {_NOT_PLOTTED[status]}"
    parts = [f"{counts[s]} {_NOT_PLOTTED[s]}" for s in _NOT_PLOTTED if s in counts]
    return "the plot is empty: no result is compared (" + "; ".join(parts) + ")"


def check_plot_format(target: str | os.PathLike | io.IOBase, fmt: str | None = None) -> None:
    """A --plot path is written as .png or .svg; anything else is refused before any work."""
    if fmt is None:
        fmt = "png" if isinstance(target, io.IOBase) else Path(os.fspath(target)).suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise ReproError(f"--plot {target}: the plot is written as .png or .svg, not .{fmt}")


def plot_deltas(report: Report, target: str | os.PathLike | io.IOBase, fmt: str | None = None) -> None:
    """Δ of every compared row against the ±tolerance band, as PNG or SVG (by extension or `fmt`).

    Uses matplotlib's object API with the Agg canvas: headless, and pyplot's global backend is
    left alone.
    """
    if fmt is None:
        fmt = Path(os.fspath(target)).suffix.lower().lstrip(".") if not isinstance(target, io.IOBase) else "png"
    check_plot_format(target, fmt)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tolerance = tolerance_of(report)
    compared = report.with_status(*COMPARED)
    labels = [f"{row['model_id']} · {row['protocol']}" for row in compared]
    deltas = [row["delta"] for row in compared]

    height = max(2.5, 0.32 * len(labels) + 1.4)
    figure = Figure(figsize=(9, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.axvspan(-tolerance, tolerance, color="#2da44e", alpha=0.15, label=f"±{tolerance:.2f} tolerance")
    axes.axvline(0.0, color="#57606a", linewidth=0.8)
    if labels:
        positions = list(range(len(labels)))[::-1]  # first row on top, as in the tables
        colours = [_PLOT_COLOURS[row["status"]] for row in compared]
        axes.scatter(deltas, positions, c=colours, zorder=3)
        axes.set_yticks(positions, labels, fontsize=8)
        limit = max([tolerance * 1.5, *[abs(d) * 1.1 for d in deltas]])
        axes.set_xlim(-limit, limit)
    else:
        axes.set_yticks([])
        reason = plot_empty_reason(report) or "no compared rows"
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


def plot_svg_text(report: Report) -> str:
    buffer = io.BytesIO()
    plot_deltas(report, buffer, fmt="svg")
    return buffer.getvalue().decode("utf-8")


# --------------------------------------------------------------------------------------------
# One entry point for the CLI and scripts

RENDERERS = {"md": render_markdown, "csv": render_csv, "json": render_json, "html": render_html}


def render(report: Report, fmt: str = "md") -> str:
    if fmt not in RENDERERS:
        raise ReproError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")
    return RENDERERS[fmt](report)


def format_for_output(path: str | os.PathLike | None) -> str:
    """The format an --output file's extension asks for (md when it says nothing known)."""
    if path is None:
        return "md"
    suffix = Path(path).suffix.lower().lstrip(".")
    aliases = {"markdown": "md", "htm": "html"}
    suffix = aliases.get(suffix, suffix)
    return suffix if suffix in FORMATS else "md"

