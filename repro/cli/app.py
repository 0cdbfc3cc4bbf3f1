"""The `repro` Typer application and its command classes: one-line errors, natural help.

Command modules register on `app` (`@app.command(...)`); `repro.cli` imports them in the help's
order. Nothing heavy is imported here: `repro --version` and `repro list` start in well under a
second.
"""

from __future__ import annotations

import difflib
import re

import typer
from typer.core import TyperCommand, TyperGroup

from repro import __version__
from repro.errors import ReproError

# click's UsageError (typer >= 0.29 ships its own copy of click): the base of typer.BadParameter.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
# A help text names the datasets with this placeholder; the registry fills it in when the command
# is built (repro.datasets loads then, not when the CLI starts).
DATASET_NAMES = "{dataset_names}"

# Old option names still accepted as a second name of an option, but not shown in the help:
# old name -> the name the help shows (filled by repro.cli.options, where the options are declared).
# A name is hidden only on an option that also has the current one: `report --output FILE` stays.
HIDDEN_ALIASES: dict[str, str] = {}


class _NaturalHelp:
    """Help that reads as usual CLI help on typer >= 0.29, which prints a type after every
    option (`--all <bool>`) and wraps required arguments in braces (`{model_id}`).

    Flags show no type, and the usage line names arguments as `ID`, `[IDS]...`.
    """

    def get_params(self, ctx: typer.Context):
        params = super().get_params(ctx)
        for param in params:  # the --help option is created here, so it is covered too
            if DATASET_NAMES in (getattr(param, "help", None) or ""):
                from repro.datasets.registry import DATASETS

                param.help = param.help.replace(DATASET_NAMES, ", ".join(DATASETS))
            if param.param_type_name == "argument":  # its name says it all: no "<list[str]>" beside it
                param.display_type_rich = _no_type
            elif param.metavar is None:  # typer prints the metavar instead of "<bool>", "<str>"
                param.metavar = "" if getattr(param, "is_flag", False) else _click_style(param.display_type(ctx))
            elif param.metavar.startswith("[") and "|" in param.metavar:  # a choice list written by hand
                param.metavar = _wrap_choices(param.metavar.replace("\n", ""))
        panels = [p.rich_help_panel for p in params if getattr(p, "rich_help_panel", None)]
        if panels and params[-1].name == "help":  # grouped options: --help closes the last panel
            params[-1].rich_help_panel = panels[-1]  # instead of an "Options" panel of its own
        return params

    def format_help(self, ctx: typer.Context, formatter) -> None:
        """The help without the hidden aliases (HIDDEN_ALIASES): they stay accepted when parsing."""
        shown = {}
        for param in self.params:
            kept = [name for name in param.opts if HIDDEN_ALIASES.get(name) not in param.opts]
            if len(kept) < len(param.opts):
                shown[param], param.opts = param.opts, kept
        try:
            return super().format_help(ctx, formatter)
        finally:
            for param, names in shown.items():
                param.opts = names

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(_usage_name(param))
        if isinstance(self, TyperGroup):
            pieces.append(self.subcommand_metavar)
        return pieces


_TYPE_NAMES = {"str": "TEXT", "int": "INTEGER", "int range": "INTEGER", "float": "FLOAT", "float range": "FLOAT",
               "path": "PATH", "file": "PATH", "directory": "DIR"}


def _click_style(typer_type: str) -> str:
    """typer's "<int>", "<table|json>", "<list[str]>" as click wrote them: INTEGER, [table|json], TEXT."""
    label = typer_type.strip("<>")
    if label.startswith("list[") and label.endswith("]"):
        label = label[5:-1]  # a repeatable option: the help says so
    if "|" in label:
        return _wrap_choices(f"[{label}]")
    return _TYPE_NAMES.get(label, label.upper())


CHOICES_WIDTH = 16  # a longer choice list goes on several lines, broken after a "|"


def _wrap_choices(text: str, width: int = CHOICES_WIDTH) -> str:
    """'[single|flip|ms+flip|documented]' -> '[single|flip|' / 'ms+flip|' / 'documented]': the help
    table's type column would otherwise fold a choice mid-word at 80 columns."""
    lines = [""]
    for piece in text.replace("|", "|\n").split("\n"):
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
    return "\n".join(lines)


def _no_type(ctx) -> None:
    return None


def _usage_name(argument) -> str:
    name = argument.metavar or (argument.name or "arg").upper()
    if not argument.required:
        name = f"[{name}]"
    return name + ("..." if argument.nargs != 1 else "")


class ReproCommand(_NaturalHelp, TyperCommand):
    """Every `repro` command (the default of ReproTyper.command)."""


class ReproGroup(_NaturalHelp, TyperGroup):
    """Turns a ReproError raised by any command into one line on stderr and its exit code."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        try:  # the root's own options (`repro --bogus`): the same one line as a command's
            return super().parse_args(ctx, args)
        except UsageError as err:
            _usage_error(err)

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except ReproError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None
        except UsageError as err:  # a bad option value: one line, not typer's boxed panel
            _usage_error(err)
        except BrokenPipeError:  # `repro list | head`: the reader left; click exits quietly
            raise
        except KeyboardInterrupt:  # outside a run (eval and fetch say how to resume themselves)
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except OSError as err:  # full disk, permissions, ...: the OS's words, one line
            where = f": {err.filename}" if err.filename else ""
            typer.echo(f"error: {err.strerror or err}{where}", err=True)
            raise typer.Exit(1) from None


def usage_error_line(err) -> str:
    """click's message on one line, with a close choice suggested and where the help is."""
    message = " ".join(err.format_message().split()).replace("Value error, ", "").rstrip(".")
    given = re.search(r"'([^']*)' is not one of (.*)$", message)
    if given:  # the choices are in the message (typer 0.29's parameters carry no click type)
        close = difflib.get_close_matches(given.group(1).lower(), re.findall(r"'([^']*)'", given.group(2)), n=1, cutoff=0.5)
        if close:
            message += f"; did you mean {close[0]}?"
    command = err.ctx.command_path if err.ctx is not None else "repro"
    return f"{message} (see `{command} --help`)"


def _usage_error(err) -> None:
    if type(err).__name__ == "NoArgsIsHelpError":  # `repro data` alone: the help, as usual
        raise err
    typer.echo(f"error: {usage_error_line(err)}", err=True)
    raise typer.Exit(err.exit_code) from None


class ReproTyper(typer.Typer):
    """typer.Typer whose commands and groups default to ReproCommand / ReproGroup.

    Use it for command groups too (`data_app = ReproTyper(name="data", ...)`).
    """

    def __init__(self, *args, cls=None, **kwargs):
        kwargs.setdefault("pretty_exceptions_enable", False)
        super().__init__(*args, cls=cls or ReproGroup, **kwargs)

    def command(self, *args, cls=None, **kwargs):
        return super().command(*args, cls=cls or ReproCommand, **kwargs)


app = ReproTyper(
    name="repro",
    help="Re-measure the published mIoU of the MCIBI / MCIBI++ (MemoryNetV2) model zoo.",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"repro {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Re-measure the published mIoU of the MCIBI / MCIBI++ (MemoryNetV2) model zoo."""
