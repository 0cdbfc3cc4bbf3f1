"""`repro selftest`: check that this machine computes what upstream's reference computes."""

from __future__ import annotations

from pathlib import Path

import typer

from repro.cli import app


@app.command("selftest")
def selftest_command(
    device: str = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: the GPU if there is one, else cpu)."),
    quick: bool = typer.Option(False, "--quick", help="Three architecture families instead of all eleven."),
    output: Path = typer.Option(None, "--output", help="Keep the pipeline's result files and report.md in this folder."),
    record: bool = typer.Option(True, "--record/--no-record", help="Save the outcome in the cache for results to cite."),
) -> None:
    """Check that this machine computes what the reference computes.

    Every architecture family against the shipped fixtures (and the GPU against the CPU), then one synthetic end-to-end evaluation per protocol kind; exit 1 if a check fails.
    """
    from repro import selftest

    say = typer.echo  # stdout, plain lines (fit 80 columns, fine in a pipe)
    report = selftest.run_selftest(device, quick, say=say, output=output)
    env = report.environment
    failed = [check for check in report.checks if not check.passed]
    verdict = "passed" if report.passed else f"FAILED ({len(failed)} of {len(report.checks)} checks)"
    say(f"selftest {verdict} on {report.device}, {report.seconds:.0f} s")
    say(f"  torch {env['torch']}" + (f", CUDA {env['cuda']}, cuDNN {env['cudnn']}, driver {env['driver']}"
                                     if env.get("cuda") else ""))
    if record:
        say(f"recorded: {selftest.record(report)}")
    if not report.passed:
        raise typer.Exit(1)
