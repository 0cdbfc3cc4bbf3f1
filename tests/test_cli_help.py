"""Help at 80 columns: eval's options grouped in panels, choice lists never broken mid-word."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from repro.cli import app
from repro.cli.eval import LauncherChoice, VariantChoice
from repro.cli.options import DOCUMENTED, PROTOCOLS
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


@pytest.mark.parametrize("choices", [[*PROTOCOLS, DOCUMENTED], [c.value for c in VariantChoice],
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


@pytest.mark.parametrize("command, shown, hidden", [
    (["eval"], ["--protocol", "--results", "--wait-lock", "--wait-jobs"], ["--tta", "--output", "--wait "]),
    (["selftest"], ["--results"], ["--output"]),
    (["explain"], ["--protocol", "--results", "--output"], ["--tta"]),  # explain's --output is its pictures
    (["diff"], ["--protocol", "--results"], ["--tta"]),
    (["report"], ["--results", "--output"], []),
    (["status"], ["--results"], []),
])
def test_help_shows_the_current_option_names_only(command, shown, hidden):
    text = help_text(*command, columns=120)
    for name in shown:
        assert f" {name} " in text, name
    for name in hidden:
        assert name not in text, name


def test_eval_help_says_when_a_plan_is_printed_and_how_times_are_estimated():
    text = " ".join(help_text("eval", columns=200).split())
    assert "A plan comes first when there are several runs or one estimated to take 5 minutes or more" in text
    assert "Times are estimates: forward FLOPs per architecture" in text
