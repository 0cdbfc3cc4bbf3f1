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
