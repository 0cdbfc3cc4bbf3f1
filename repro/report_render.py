"""How `repro report` shows the table `repro.report.build_report` builds: GitHub markdown, CSV,
JSON, a self-contained HTML page, and the Δ plot. The columns people read are declared once,
in `repro.report.DISPLAY_COLUMNS`; every renderer takes its headings, alignment and number
format from there.

Links from the HTML page: `render_html(frame, row_link=...)` takes a function of a frame row that
returns an address (or None); the row's Model cell links there (e.g. an explain page).
"""

from __future__ import annotations

import html
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from repro.errors import ReproError
from repro.report import (
    BLANK_DOC, COMPARED, DISPLAY_COLUMNS, ENVIRONMENT_LABELS, FAILED, FORMATS, NON_COMPARABLE, NOT_RUN, PARTIAL,
    REPRODUCED, SERVER, UPSTREAM_NOW, environments, hidden_line, notes_of, summary_line, tolerance_of,
    tolerance_text,
)

RowLink = Callable[[pd.Series], "str | None"]  # a frame row -> the address its Model cell links to


# --------------------------------------------------------------------------------------------
# Shared by the renderers


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
    """The human-facing columns of `rows` (DISPLAY_COLUMNS), as the text the tables show."""
    shown = pd.DataFrame(index=rows.index)
    for column in DISPLAY_COLUMNS:
        values = rows[column.field]
        if column.numeric:
            shown[column.heading] = values.map(lambda v, signed=column.signed: _number(v, signed=signed))
        else:
            shown[column.heading] = values.map(_text)
    return shown.reset_index(drop=True)


def _text(value: object) -> str:
    """A cell as text; missing values (None, NaN, pandas' NA) are empty."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    return str(value)


def _notes_lines(frame: pd.DataFrame) -> list[str]:
    """The notes on the files read, and how many rows are hidden, one sentence each."""
    hidden = hidden_line(frame)
    return [*(f"Note: {note}" for note in notes_of(frame)), *([hidden] if hidden else [])]


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


_MD_ALIGNS = {"left": ":-", "right": "-:", "center": ":-:"}
_MD_ALIGN = [_MD_ALIGNS[column.align] for column in DISPLAY_COLUMNS]


def render_markdown(frame: pd.DataFrame, *, per_class: bool | None = None) -> str:
    """GitHub markdown: a heading per method and per document table, one pipe table each."""
    out = ["# Documented vs measured mIoU", "", tolerance_text(frame), "", summary_line(frame), ""]
    for line in _notes_lines(frame):
        out += [line, ""]
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

_HTML_NUMERIC = {column.heading for column in DISPLAY_COLUMNS if column.numeric} | {"IoU", "Results"}
_LINKED = "Model"  # the cell of a row that `row_link` turns into a link


def _html_cell(column: str, value: object, css: list[str], link: str | None) -> str:
    text = html.escape(str(value))
    if link and column == _LINKED:
        text = f'<a href="{html.escape(link, quote=True)}">{text}</a>'
    attr = f' class="{" ".join(css)}"' if css else ""
    return f"<td{attr}>{text}</td>"


def _html_table(table: pd.DataFrame, status_slugs: Sequence[str] | None = None,
                links: Sequence[str | None] | None = None) -> str:
    """An escaped HTML table; status cells carry their slug as a class for colouring; `links`:
    one address (or None) per row for its Model cell."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = []
    for i, values in enumerate(table.itertuples(index=False)):
        cells = []
        for column, value in zip(table.columns, values):
            css = ["num"] if column in _HTML_NUMERIC else []
            if column == "Status" and status_slugs is not None:
                css.append(status_slugs[i])
            cells.append(_html_cell(column, value, css, links[i] if links is not None else None))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def render_html(frame: pd.DataFrame, *, per_class: bool | None = None, plot_svg: str | None = None,
                row_link: RowLink | None = None, appendix: str = "") -> str:
    """One self-contained page (inline CSS, no scripts, no external assets).

    `plot_svg` (the text of an SVG, e.g. from `plot_deltas(frame, buffer, fmt="svg")`) is
    embedded inline when given. `row_link(row)` (a frame row) gives the address the row's Model
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
        f"<p>{html.escape(tolerance_text(frame))}</p>",
        f'<p class="summary">{html.escape(summary_line(frame))}</p>',
    ]
    parts += [f"<p>{html.escape(line)}</p>" for line in _notes_lines(frame)]
    for headings, table, rows in _headed_groups(frame):
        for level, text in headings:
            parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
        parts.append(f"<h4>{html.escape(table)}</h4>")
        links = [row_link(row) for _, row in rows.iterrows()] if row_link is not None else None
        parts.append(_html_table(display_frame(rows), list(rows["status"]), links))

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
    if appendix:  # e.g. the explain pages the rows link to (repro.explain_html.report_appendix)
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


def check_plot_format(target: str | os.PathLike | io.IOBase, fmt: str | None = None) -> None:
    """A --plot path is written as .png or .svg; anything else is refused before any work."""
    if fmt is None:
        fmt = "png" if isinstance(target, io.IOBase) else Path(os.fspath(target)).suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise ReproError(f"--plot {target}: the plot is written as .png or .svg, not .{fmt}")


def plot_deltas(frame: pd.DataFrame, target: str | os.PathLike | io.IOBase, fmt: str | None = None) -> None:
    """Δ of every compared row against the ±tolerance band, as PNG or SVG (by extension or `fmt`).

    Uses matplotlib's object API with the Agg canvas: headless, and pyplot's global backend is
    left alone.
    """
    if fmt is None:
        fmt = Path(os.fspath(target)).suffix.lower().lstrip(".") if not isinstance(target, io.IOBase) else "png"
    check_plot_format(target, fmt)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tolerance = tolerance_of(frame)
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

