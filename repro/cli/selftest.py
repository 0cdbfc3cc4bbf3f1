"""`repro selftest`: check that this machine computes what upstream's reference computes."""

from __future__ import annotations

from pathlib import Path

import typer

from repro.cli.app import app
from repro.cli.options import RESULTS_OPTION, TableOrJson, with_help, with_results_old_name


@app.command("selftest")
def selftest_command(
    device: str = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: the GPU if there is one, else cpu)."),
    quick: bool = typer.Option(False, "--quick", help="Three architecture families instead of all eleven."),
    results: Path = with_help(with_results_old_name(RESULTS_OPTION),
                              "Keep the pipeline's result files and report.md in this folder."),
    record: bool = typer.Option(True, "--record/--no-record", help="Save the outcome in the cache for results to cite."),
    fmt: TableOrJson = typer.Option(TableOrJson.table, "--format", help="table (plain lines) for people; json (the recorded report) for scripts, the lines then go to stderr."),
) -> None:
    """Check that this machine computes what the reference computes.

    Every architecture family against the shipped fixtures (and the GPU against the CPU), then one synthetic end-to-end evaluation per protocol kind; exit 1 if a check fails.
    """
    from repro import selftest

    as_json = fmt is TableOrJson.json

    def say(line: str) -> None:  # plain lines that fit 80 columns; on stderr when stdout carries the JSON
        typer.echo(line, err=as_json)

    report = selftest.run_selftest(device, quick, say=say, results=results)
    env = report.environment
    failed = [check for check in report.checks if not check.passed]
    verdict = "passed" if report.passed else f"FAILED ({len(failed)} of {len(report.checks)} checks)"
    say(f"selftest {verdict} on {report.device}, {report.seconds:.0f} s")
    say(f"  torch {env['torch']}" + (f", CUDA {env['cuda']}, cuDNN {env['cudnn']}, driver {env['driver']}"
                                     if env.get("cuda") else ""))
    if record:
        say(f"recorded: {selftest.record(report)}")
    if as_json:
        typer.echo(report.to_json(), nl=False)
    if not report.passed:
        raise typer.Exit(1)
