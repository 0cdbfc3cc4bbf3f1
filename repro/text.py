"""Counts in words, the one rule for every message: `counted(1, "image")` is "1 image",
`counted(3, "image")` "3 images" (never "1 images"; no "image(s)" hedging where the number is known)."""

from __future__ import annotations

IRREGULAR = {"class": "classes", "pass": "passes", "process": "processes"}  # English plurals that add -es


def plural(count: int, word: str) -> str:
    """`word` as it goes with `count`: the word itself for exactly one, else its plural."""
    return word if count == 1 else IRREGULAR.get(word, word + "s")


def counted(count: int, word: str) -> str:
    """'1 image', '0 images', '20 images'."""
    return f"{count} {plural(count, word)}"


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_digest(digest: str | None, missing: str = "none") -> str:
    """The first 12 hex digits of a sha256 and an ellipsis, as messages name a file's digest."""
    return f"{digest[:12]}…" if digest else missing


def two_decimals(value: float | None, signed: bool = False, missing: str = "-") -> str:
    """'44.39', '+0.07' (signed, as a Δ is printed); `missing` for no value."""
    if value is None or value != value:  # None or NaN
        return missing
    return f"{value + 0.0:+.2f}" if signed else f"{value:.2f}"


def aligned(rows: list[list[str]], align: str, indent: str = "") -> list[str]:
    """Rows of cells as lines, columns two spaces apart, each left ('l') or right ('r') aligned
    as `align` says, no trailing spaces (pipes and logs diff and grep these)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []
    return [(indent + "  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(row, widths, align))).rstrip()
            for row in rows]
