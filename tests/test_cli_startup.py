"""The command line starts fast and its help reads naturally, checked through real processes.

Start-up: commands that do not run a model never import torch, cv2, pandas, ... (the time itself
is measured by benchmarks/startup.py, not asserted here). Help: typer 0.29 prints `<bool>` after
every flag and `{model_id}` in usage lines unless repro.cli's command classes are in charge.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MODEL = "mcibi_deeplabv3_r50_ade20k"
HEAVY = ("torch", "cv2", "pandas", "numpy", "matplotlib", "scipy")
# What `import repro.cli` may never pull in (the command modules import these inside commands).
NOT_AT_IMPORT = (*HEAVY, "repro.models", "repro.inference.predictor", "repro.datasets", "repro.fetch")

# Run in a fresh interpreter: import repro.cli, run one command in-process (as the console script
# would), then write the names of the modules loaded so far to the file named by argv[1].
PROBE = """
import json, sys
out, args = sys.argv[1], json.loads(sys.argv[2])
import repro.cli
if args is not None:
    try:
        repro.cli.app(args, standalone_mode=False)
    except SystemExit:
        pass
with open(out, "w") as f:
    json.dump(sorted(sys.modules), f)
"""


def console_script() -> str:
    beside = Path(sys.executable).with_name("repro")  # the venv running the tests
    found = str(beside) if beside.exists() else shutil.which("repro")
    assert found, "the repro console script is not installed (pip install -e .)"
    return found


@pytest.fixture
def isolated_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
    env.update(REPRO_HOME=str(tmp_path / "home"), REPRO_DATA=str(tmp_path / "data"),
               REPRO_RESULTS=str(tmp_path / "results"), COLUMNS="100")
    return env


def loaded_modules(tmp_path, env, args) -> set[str]:
    out = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", PROBE, str(out), json.dumps(args)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(out.read_text()))


def loaded(modules: set[str], names) -> list[str]:
    return sorted(n for n in names if n in modules or any(m.startswith(n + ".") for m in modules))


def test_import_of_the_cli_loads_nothing_heavy(tmp_path, isolated_env):
    modules = loaded_modules(tmp_path, isolated_env, None)
    assert "repro.cli.zoo" in modules  # the probe did import the command modules
    assert loaded(modules, NOT_AT_IMPORT) == []
    assert loaded(modules, ("pydantic", "yaml")) == []  # --version does not even read the manifest


@pytest.mark.parametrize(
    "args, forbidden",
    [
        (["--version"], HEAVY),
        (["list"], HEAVY),
        (["info", MODEL], HEAVY),
        (["fetch", "--where"], ("torch", "cv2", "pandas", "numpy")),
        (["report"], HEAVY),  # issue 18 #13: the report is plain rows, pandas only for Report.to_frame()
        (["report", "--all-rows", "--format", "csv"], HEAVY),
        (["report", "--all-rows", "--format", "html"], ("torch", "cv2", "pandas")),  # explain pages: numpy
    ],
)
def test_commands_without_a_model_do_not_import_torch(tmp_path, isolated_env, args, forbidden):
    modules = loaded_modules(tmp_path, isolated_env, args)
    assert "repro.cli" in modules
    assert loaded(modules, forbidden) == []


@pytest.fixture
def bad_inputs(tmp_path):
    """A text file posing as a checkpoint, and a folder that looks like LIP (so the checkpoint is what fails)."""
    text = tmp_path / "text.pth"
    text.write_text("<html>rate limited</html>\n")
    lip = tmp_path / "lip"
    lip.mkdir()
    (lip / "val_id.txt").write_text("")
    return {"text": str(text), "lip": f"lip={lip}", "missing": str(tmp_path / "missing.pth")}


@pytest.mark.parametrize("args", [
    ["eval", "--all", "--dry-run"],
    ["eval", "--all", "--dry-run", "--format", "json"],
    ["eval", "mcibi_deeplabv3_r50_lip", "--checkpoint", "{missing}"],
    ["eval", "mcibi_deeplabv3_r50_lip", "--checkpoint", "{text}", "--dataset-root", "{lip}"],
    ["eval", "mcibi_deeplabv3_r50_lip", "--device", "cuda", "--dry-run"],  # refused, or planned: no torch either way
    ["eval", "mcibi_deeplabv3_r50_lip", "--protocol", "msflip"],
    ["status"],
])
def test_the_plan_and_eval_input_errors_do_not_import_torch(tmp_path, isolated_env, bad_inputs, args):
    """Issue 18 #13: eval plans and refuses bad input before torch loads (benchmarks/startup.py times it)."""
    modules = loaded_modules(tmp_path, isolated_env, [part.format(**bad_inputs) for part in args])
    assert "repro.cli.eval" in modules
    assert loaded(modules, ("torch", "repro.models", "repro.inference.predictor", "repro.engine.devices")) == []


def test_status_does_not_load_pandas_numpy_or_the_http_client(tmp_path, isolated_env):
    """Issue 18 #13 (status under 0.5 s): the dataset layouts count files without numpy or PIL."""
    modules = loaded_modules(tmp_path, isolated_env, ["status"])
    assert "repro.datasets.registry" in modules  # status did look at the datasets
    assert loaded(modules, ("pandas", "requests", "matplotlib", "numpy", "PIL")) == []


def test_the_probe_would_see_a_heavy_import(tmp_path, isolated_env):
    """The checks above can fail: a command that draws does load matplotlib and numpy."""
    probe_args = ["report", "--all-rows", "--plot", str(tmp_path / "plot.png")]
    modules = loaded_modules(tmp_path, isolated_env, probe_args)
    assert (tmp_path / "plot.png").is_file()
    assert loaded(modules, ("matplotlib", "numpy")) == ["matplotlib", "numpy"]


def run_repro(args, env) -> subprocess.CompletedProcess:
    return subprocess.run([console_script(), *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [["--help"], ["eval", "--help"]])
def test_help_reads_naturally(isolated_env, args):
    done = run_repro(args, isolated_env)
    assert done.returncode == 0, done.stderr
    assert "Usage: repro" in done.stdout
    assert "<bool>" not in done.stdout
    assert "{" not in done.stdout and "}" not in done.stdout


@pytest.mark.parametrize("args, usage", [
    (["info"], "Usage: repro info [OPTIONS] ID"),
    (["data", "check"], "Usage: repro data check [OPTIONS] DATASET"),
    (["fetch"], "Usage: repro fetch [OPTIONS] [IDS]..."),
    (["data"], "Usage: repro data [OPTIONS] COMMAND [ARGS]..."),
])
def test_usage_names_arguments_plainly(args, usage):
    from typer.testing import CliRunner

    from repro.cli import app

    assert usage in CliRunner(env={"COLUMNS": "100"}).invoke(app, [*args, "--help"]).output


def test_every_command_help_in_process():
    """Every command and group, including ones added later, renders without typer's type tags."""
    import typer
    from typer.testing import CliRunner

    from repro.cli import app

    runner = CliRunner(env={"COLUMNS": "100"})
    root = typer.main.get_command(app)
    paths = [[]]
    for name, command in root.commands.items():
        paths.append([name])
        paths += [[name, sub] for sub in getattr(command, "commands", {})]
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output and "{" not in result.output, (path, result.output)
        assert not TYPER_TYPE_TAG.search(result.output), (path, result.output)  # <str>, <list[str]>, <a|b>


TYPER_TYPE_TAG = re.compile(r"<(bool|str|int|float|path|int range|float range|list\[\w+\])>|<[\w+-]+(\|[\w+-]+)+>")


def test_version_through_the_console_script(isolated_env):
    from repro import __version__

    done = run_repro(["--version"], isolated_env)
    assert done.returncode == 0 and done.stdout.strip() == f"repro {__version__}"


def test_manifest_data_cache_is_keyed_by_the_text_and_never_trusted_blindly(tmp_path, monkeypatch):
    from repro.errors import ManifestError
    from repro.manifest import DEFAULT_PATH, parse_manifest

    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    text = DEFAULT_PATH.read_text(encoding="utf-8")
    first = parse_manifest(text, data_cache=tmp_path)
    (copy,) = tmp_path.glob("model_zoo.*.json")
    assert parse_manifest(text, data_cache=tmp_path) == first  # read back from the JSON copy
    copy.write_text("{not json", encoding="utf-8")
    assert parse_manifest(text, data_cache=tmp_path) == first  # a broken copy: the YAML is parsed again
    edited = text.replace("num_classes: 150", "num_classes: -1", 1)
    with pytest.raises(ManifestError, match="num_classes"):  # another text, another key: validated
        parse_manifest(edited, data_cache=tmp_path)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    other = tmp_path / "other"
    parse_manifest(text, data_cache=other)
    assert not other.exists()  # PYTHONDONTWRITEBYTECODE: nothing written


def test_constants_repeated_to_keep_imports_light_match_their_source():
    import repro.cli.data
    import repro.cli.report
    import repro.cli.zoo
    import repro.datasets.check
    import repro.manifest
    import repro.results.comparison

    assert repro.cli.data.DEFAULT_SAMPLE == repro.datasets.check.DEFAULT_SAMPLE
    assert repro.cli.report.DEFAULT_TOLERANCE == repro.results.comparison.DEFAULT_TOLERANCE
    assert repro.cli.zoo.PROTOCOLS == repro.manifest.PROTOCOL_NAMES


def test_the_plan_sees_gpus_through_the_driver_without_torch(tmp_path, monkeypatch):
    """detect_device reads /proc/driver/nvidia (no torch); CUDA_VISIBLE_DEVICES hides GPUs as CUDA would."""
    import repro.planning.plan as plan
    from repro.errors import ReproError

    for bus, name in (("0000:01:00.0", "NVIDIA H200"), ("0000:02:00.0", "NVIDIA A100-SXM4-80GB")):
        (tmp_path / bus).mkdir()
        (tmp_path / bus / "information").write_text(f"Model: \t\t {name}\nIRQ: 42\n")
    monkeypatch.setattr(plan, "NVIDIA_GPUS", tmp_path)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert plan.detect_device("auto") == plan.DeviceInfo("cuda", "NVIDIA H200")
    assert plan.detect_device("cuda:1").name == "NVIDIA A100-SXM4-80GB"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert plan.visible_gpus() == ["NVIDIA A100-SXM4-80GB"]
    with pytest.raises(ReproError, match="this machine has 1 GPU"):
        plan.detect_device("cuda:1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert plan.detect_device("auto").kind == "cpu"
    with pytest.raises(ReproError, match="CUDA is not available here"):
        plan.detect_device("cuda")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert plan.detect_device("cpu") == plan.DeviceInfo("cpu", "cpu", 3)
