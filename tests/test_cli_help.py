"""Help at 80 columns: eval's options grouped in panels, choice lists never broken mid-word."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from repro.cli import app
from repro.cli.eval import LauncherChoice, TTAChoice, VariantChoice
from repro.cli.options import TableOrJson as PlanFormat
from repro.numerics import PRECISIONS

EVAL_PANELS = ("What to run", "Data", "Engine", "Output", "Cluster")


def help_text(*args: str, columns: int = 80) -> str:
    result = CliRunner(env={"COLUMNS": str(columns)}).invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def panel_titles(text: str) -> list[str]:
    return re.findall(r"╭─ (.+?) ─+╮", text)


def test_eval_options_sit_in_the_agreed_panels():
    text = help_text("eval")
    titles = panel_titles(text)
    assert titles[0] == "Arguments"
    assert titles[1:] == list(EVAL_PANELS)  # no catch-all "Options" panel: every option is placed


@pytest.mark.parametrize("choices", [[c.value for c in TTAChoice], [c.value for c in VariantChoice],
                                     [c.value for c in LauncherChoice], [c.value for c in PlanFormat], PRECISIONS])
def test_eval_choice_lists_stay_whole_at_80_columns(choices):
    text = help_text("eval")
    assert max(len(line) for line in text.splitlines()) <= 80
    tokens = set(re.split(r"[\s│|\[\],]+", text))
    for choice in choices:
        assert choice in tokens, choice
        broken = [t for t in tokens if t and choice.startswith(t) and t != choice and choice[len(t):] in tokens]
        assert broken == [], (choice, broken)  # e.g. 'documen' + 'ted' on the next line


def test_eval_help_is_short():
    assert len(help_text("eval").splitlines()) <= 125  # was 148 with one 'Options' panel and 8 options fewer
