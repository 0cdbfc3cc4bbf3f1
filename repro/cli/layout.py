"""Plain text layout shared by the commands: the width to fit, aligned columns that never cut a
value, lines wrapped between words."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

PIPE_WIDTH = 80  # a pipe or a log without $COLUMNS: what an 80-column terminal shows


def output_width(stream: Any = None, *, most: int | None = None) -> int:
    """The columns a command's text fits (default stream: stdout): the terminal's width; in a
    pipe $COLUMNS when set, else 80. `most` caps it (prose reads badly in very long lines)."""
    stream = sys.stdout if stream is None else stream
    if hasattr(stream, "isatty") and stream.isatty():
        width = shutil.get_terminal_size((PIPE_WIDTH, 24)).columns
    else:
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else PIPE_WIDTH
    return width if most is None else min(width, most)


def aligned_lines(rows: Sequence[dict[str, str]], columns: Sequence[str], right: Iterable[str] = ()) -> list[str]:
    """A header line and one line per row, columns two spaces apart, `right` ones right-aligned;
    no trailing spaces (repro.text.aligned)."""
    from repro.text import aligned

    right = set(right)
    cells = [list(columns), *([row[c] for c in columns] for row in rows)]
    return aligned(cells, "".join("r" if c in right else "l" for c in columns))


def print_trimmed(console, renderable) -> None:
    """Print a rich renderable; off a terminal without the padding rich adds to fill each line
    (a pipe or a log gets no trailing spaces)."""
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    text = "\n".join(line.rstrip() for line in captured.get().splitlines())
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def terminal_lines(console, line: str) -> list[str]:
    """`line` as it should appear: whole in a pipe or a log (one line per event, for grep); on a
    terminal wrapped between words at its width, continuation lines indented, so no number, path
    or word is broken by the terminal's own wrapping."""
    if not console.is_terminal or len(line) <= console.width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip()) + 2)
    return textwrap.wrap(line, width=console.width, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False) or [line]
