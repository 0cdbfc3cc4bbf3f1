"""Explain pages as HTML: one self-contained section per result (pictures as data URIs), for
`repro explain --output DIR` (DIR/index.html) and the explain pages of `repro report --format html`."""

from __future__ import annotations

import base64
import html
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from repro.explain.explanation import Explanation, _headline, explain_result

STYLE = """
.explain { max-width: 1200px; margin: 2em 0; padding-top: 1em; border-top: 2px solid #ccc; }
.explain table { border-collapse: collapse; margin: 0.5em 0 1em; }
.explain td, .explain th { padding: 2px 10px; border-bottom: 1px solid #eee; text-align: left; }
.explain td.num, .explain th.num { text-align: right; font-variant-numeric: tabular-nums; }
.explain .cause { color: #a00; font-weight: 600; }
.explain .note { color: #555; }
.explain img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
.explain .tables { display: flex; flex-wrap: wrap; gap: 2em; }
.explain code { overflow-wrap: anywhere; }
"""


def anchor(result_file: str | Path) -> str:
    """The id of a result's explain section, from its file name: `m__ms+flip.json` ->
    `explain-m-ms-flip` (stable and URL-safe; one per result file)."""
    stem = Path(result_file).name.removesuffix(".json")
    return "explain-" + re.sub(r"[^A-Za-z0-9_-]+", "-", stem.replace("__", "-")).strip("-")


def anchor_of(x: Explanation) -> str:
    return anchor(x.path)


def _e(text) -> str:
    return html.escape(str(text))


def _with_code(text: str) -> str:
    """Escaped text with `commands` as <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", _e(text))


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> str:
    def cells(tag: str, values) -> str:
        return "".join(f'<{tag}{" class=num" if n else ""}>{_e(v)}</{tag}>' for v, n in zip(values, numeric))

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><thead><tr>{cells('th', head)}</tr></thead><tbody>{body}</tbody></table>"


def _tables(x: Explanation) -> str:
    parts = []
    if x.classes:
        with_share = x.classes[0].gt_share is not None
        rows = [[c.name, "-" if c.iou is None else f"{c.iou:.2f}"] + ([f"{100 * c.gt_share:.2f}%"] if with_share else [])
                for c in x.classes]
        head = ["class", "IoU"] + (["share of labels"] if with_share else [])
        parts.append("<div><h4>Per-class IoU, worst first</h4>" + _table(head, rows, [False, True, True]) + "</div>")
    if x.confusions:
        rows = [[c.gt, c.pred, f"{100 * c.share:.1f}%"] for c in x.confusions]
        parts.append("<div><h4>Top confusions</h4>"
                     + _table(["label", "predicted", "share of label"], rows, [False, False, True]) + "</div>")
    if x.worst_images:
        rows = [[i.image_id, f"{i.miou:.2f}", f"{100 * i.wrong:.1f}%"] for i in x.worst_images]
        parts.append("<div><h4>Worst images</h4>"
                     + _table(["image", "mIoU", "wrong pixels"], rows, [False, True, True]) + "</div>")
    return f'<div class="tables">{"".join(parts)}</div>' if parts else ""


def section(x: Explanation, pictures: Sequence[Path] = (), notes: Sequence[str] = ()) -> str:
    """One result's explain section (an HTML fragment with its pictures embedded)."""
    out = [f'<section class="explain" id="{anchor_of(x)}">', f"<h3>{_e(x.title)}</h3>", f"<p>{_e(_headline(x))}</p>"]
    out.append(_table(["condition", "value"], [[k, v] for k, v in x.conditions], [False, False]))
    out += [f'<p class="note">{_with_code(n)}</p>' for n in x.condition_notes]
    if x.missing:
        out.append(f'<p class="note">{_with_code(x.missing)}</p>')
    if x.findings:
        out.append("<h4>Likely causes</h4><ul>" + "".join(f'<li class="cause">{_with_code(f.line)}</li>'
                                                          for f in x.findings) + "</ul>")
    elif x.evidence is not None and x.evidence.has_labels:
        out.append("<p>Likely causes: none of the checks fired.</p>")
    out += [f'<p class="note">not checked: {_with_code(n)}</p>' for n in x.unchecked]
    out.append(_tables(x))
    out += [f'<p class="note">{_with_code(n)}</p>' for n in notes]
    out += [f'<img src="{data_uri(p)}" alt="{_e(p.stem)}">' for p in pictures]
    out.append("</section>")
    return "\n".join(out)


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>body {{ font-family: sans-serif; margin: 1em 2em; }}{STYLE}</style></head>"
            f"<body>\n{body}\n</body></html>\n")


def explain_section_for(result_path: str | Path, *, manifest=None, images: int = 2, top: int = 8) -> tuple[str, str]:
    """(anchor, section HTML) of one result file, its pictures drawn in a temporary folder."""
    from repro.explain.draw import draw_all

    x = explain_result(result_path, manifest=manifest, top=top)
    with tempfile.TemporaryDirectory(prefix="repro-explain-") as tmp:
        drawn = draw_all(x, tmp, num_images=images)
        return anchor_of(x), section(x, drawn.files, drawn.notes)


def write_explain_folder(x: Explanation, output: str | Path, num_images: int = 4):
    """`repro explain --output DIR`: the pictures (repro.explain.draw) and DIR/index.html."""
    from repro.explain.draw import draw_all
    from repro.fileio import atomic_write_text

    drawn = draw_all(x, output, num_images=num_images)
    atomic_write_text(Path(output) / "index.html", page(x.title, section(x, drawn.files, drawn.notes)))
    return drawn


def explain_sections(result_files, *, manifest=None, images: int = 2, top: int = 8) -> dict[str, str]:
    """{result file: its explain section} (the report's explain pages); a file that cannot be
    explained gets a section saying why, in one line."""
    from repro.errors import ReproError

    sections = {}
    for path in dict.fromkeys(str(f) for f in result_files if f):
        try:
            sections[path] = explain_section_for(path, manifest=manifest, images=images, top=top)[1]
        except ReproError as err:
            sections[path] = (f'<section class="explain" id="{anchor(path)}"><h3>{_e(Path(path).name)}</h3>'
                              f'<p class="note">not explained: {_e(err)}</p></section>')
    return sections


def report_appendix(sections: dict[str, str]) -> str:
    """The explain pages as the end of the HTML report (its own style included)."""
    if not sections:
        return ""
    intro = ("<h2>Explain pages</h2><p>One per measured row (the row's Model cell links here): what "
             "<code>repro explain</code> prints, with its pictures.</p>")
    return f"<style>{STYLE}</style>\n{intro}\n" + "\n".join(sections.values())


def report_row_link(row) -> str | None:
    """The report's `row_link`: a measured row's Model cell links to its explain section."""
    result_file = row.get("result_file") if hasattr(row, "get") else None
    return f"#{anchor(result_file)}" if isinstance(result_file, str) and result_file else None
