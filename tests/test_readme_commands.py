"""Every `repro ...` command in README.md's ```bash blocks works as written.

The commands run in README order, through the real console script and a shell (so `~` and `&&`
mean what they mean to a user), in one sandbox: REPRO_HOME / REPRO_DATA / REPRO_RESULTS and HOME
in tmp_path. The network is a loopback server behind $REPRO_MIRROR, which serves what the real
GitHub release URLs would (a checkpoint with the row's class count, a synthetic ADE20k archive of
the official size); a `--from ~/Downloads/X.pth` file is created before its command runs.

A command added to the README is picked up automatically. To leave one out, add it to SKIP with
the reason; a reason starting with "slow:" means only the slow test runs it (with real weights).
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from fetch_support import checkpoint_bytes, fitting_checkpoint_bytes
from http_server import FileServer
from synthetic_data import make_ade20k, make_lip

from repro.fetch import mirror_url
from repro.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[1]

SKIP = {  # command as written in the README (comment dropped) -> why the walk does not run it
    "repro eval --all": "the main job: every documented number on the full datasets (days of compute)",
    "repro eval memorynetv2_upernet_resnet101os8_lip --protocol flip --limit 50": "slow: a ResNet-101 UperNet on the CPU",
}
ADE20K_VAL_IMAGES = 2000  # the official count: `repro data check ade20k` accepts nothing less


def readme_commands() -> list[str]:
    """The `repro ...` commands of the README's bash blocks, in order (`a && repro b` gives `repro b`)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            commands += [part.strip() for part in line.split("&&") if part.strip().startswith("repro ")]
    return commands


def test_readme_python_blocks_run(tmp_path):
    """The README's ```python examples run as written (in a fresh interpreter, results in tmp_path)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert blocks, "the README shows the Python API"
    env = {**os.environ, "REPRO_HOME": str(tmp_path / "home"), "REPRO_RESULTS": str(tmp_path / "results")}
    (tmp_path / "results").mkdir()
    for block in blocks:
        done = subprocess.run([sys.executable, "-c", block], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip(), block


def test_readme_has_the_commands_a_user_starts_with():
    commands = readme_commands()
    assert "repro list" in commands  # from `pip install ... && repro list`
    assert any(c.startswith("repro fetch ") and " --from " in c for c in commands)
    assert all(c in commands for c in SKIP), "SKIP names a command the README no longer shows"


# ---------------------------------------------------------------------------------------------
# The sandbox


def console_script() -> str:
    beside = Path(sys.executable).with_name("repro")
    found = str(beside) if beside.exists() else shutil.which("repro")
    assert found, "the repro console script is not installed (pip install -e .)"
    return found


def ade20k_archive(tmp: Path) -> bytes:
    """upstream's ADE20k.tar.gz layout with the official 2000 val images (20 distinct tiny ones, repeated)."""
    make_ade20k(tmp, n_val=20, size=(8, 8))
    base = tmp / "ADEChallengeData2016"
    images = sorted((base / "images" / "validation").iterdir())
    labels = sorted((base / "annotations" / "validation").iterdir())
    ids = [f"ADE_val_{i + 1:08d}" for i in range(ADE20K_VAL_IMAGES)]
    files = {"val.txt": ("\n".join(ids) + "\n").encode()}
    for i, image_id in enumerate(ids):
        files[f"images/validation/{image_id}.jpg"] = images[i % len(images)].read_bytes()
        files[f"annotations/validation/{image_id}.png"] = labels[i % len(labels)].read_bytes()
    for path in (base / "images" / "training").iterdir():
        files[f"images/training/{path.name}"] = path.read_bytes()
        files[f"annotations/training/{path.stem}.png"] = (base / "annotations" / "training" / f"{path.stem}.png").read_bytes()
    files["train.txt"] = (base / "train.txt").read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"ADE20k/ADEChallengeData2016/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tiny_checkpoint(model_id: str) -> bytes:
    """Enough for `repro fetch` (class count, weights_only load), not for running the network."""
    entry = load_manifest().get(model_id)
    return checkpoint_bytes(entry.num_classes, plusplus=entry.method == "memorynetv2")


def real_checkpoint(model_id: str, path: Path) -> None:
    from repro.models import build_segmentor, fill_model

    torch.save({"model": fill_model(build_segmentor(model_id)).state_dict()}, path)


class Sandbox:
    def __init__(self, tmp: Path, server: FileServer, real_weights: bool):
        self.tmp, self.server, self.real_weights = tmp, server, real_weights
        self.home, self.results, self.work = tmp / "user", tmp / "results", tmp / "work"
        self.work.mkdir(parents=True)
        script = console_script()
        env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
        env.update(
            HOME=str(self.home), REPRO_HOME=str(tmp / "cache"), REPRO_DATA=str(tmp / "data"),
            REPRO_RESULTS=str(self.results), REPRO_MIRROR=server.url("/gh"), COLUMNS="100",
            PATH=os.path.dirname(script) + os.pathsep + env.get("PATH", ""),
        )
        self.env = env
        self.datasets_served: set[str] = set()

    def serve_row(self, model_id: str) -> None:
        """What the row's GitHub release URLs would give: its checkpoint, and its dataset archive."""
        entry = load_manifest().get(model_id)
        self.server.add(urlparse(mirror_url(entry.weights[0], self.server.url("/gh"))).path, tiny_checkpoint(entry.id))
        if entry.dataset in self.datasets_served:
            return
        assert entry.dataset == "ade20k", f"teach the README test to serve the {entry.dataset} archive"
        url = "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_datasets/ADE20k.tar.gz"
        self.server.add(urlparse(mirror_url(url, self.server.url("/gh"))).path, ade20k_archive(self.tmp / "ade-src"))
        self.datasets_served.add(entry.dataset)

    def prepare(self, command: str) -> None:
        args = shlex.split(command)[1:]
        if args[0] != "fetch":
            return
        ids = [a for i, a in enumerate(args[1:], 1) if not a.startswith("-") and not args[i - 1].startswith("--")]
        if "--from" in args:  # the user's downloaded file
            given = args[args.index("--from") + 1]
            source = self.home / given[2:] if given.startswith("~/") else self.work / given
            source.parent.mkdir(parents=True, exist_ok=True)
            if self.real_weights:
                real_checkpoint(ids[0], source)
            else:  # `fetch --from` checks every key and shape: a real-shaped file of a few hundred kB
                source.write_bytes(fitting_checkpoint_bytes(ids[0]))
            if load_manifest().get(ids[0]).dataset == "lip":  # the smoke run's dataset, already on disk
                make_lip(self.tmp / "data" / "LIP", n_val=2)
        else:
            for model_id in ids:
                self.serve_row(model_id)

    def run(self, command: str) -> subprocess.CompletedProcess:
        self.prepare(command)
        return subprocess.run(["bash", "-c", command], cwd=self.work, env=self.env, capture_output=True,
                              text=True, timeout=900)


def walk_readme(tmp_path: Path, real_weights: bool) -> tuple[list[str], list]:
    """Run every README command in order; return those run and the server's request log. Fails on
    the first non-zero exit."""
    done = []
    with FileServer(lifetime_s=900) as server:
        sandbox = Sandbox(tmp_path, server, real_weights)
        for command in readme_commands():
            reason = SKIP.get(command)
            if reason is not None and not (real_weights and reason.startswith("slow:")):
                continue
            before = set(sandbox.results.rglob("*.json")) if sandbox.results.exists() else set()
            result = sandbox.run(command)
            assert result.returncode == 0, f"README command failed: {command}\n{result.stdout}\n{result.stderr}"
            assert "Traceback" not in result.stderr, command
            if shlex.split(command)[1] == "eval":
                written = set(sandbox.results.rglob("*.json")) - before if sandbox.results.exists() else set()
                assert written, f"{command}: no result file in {sandbox.results}\n{result.stderr}"
            done.append(command)
    return done, server.log


def test_readme_commands(tmp_path):
    done, requests = walk_readme(tmp_path, real_weights=False)
    assert [c for c in readme_commands() if c not in SKIP] == done
    if any(c.startswith("repro fetch ") and "--from" not in c for c in done):  # downloads went to the loopback
        assert requests and all(r.status in (200, 206) for r in requests)


@pytest.mark.slow
def test_readme_commands_with_real_weights(tmp_path):
    """The smoke run for real: a filled checkpoint imported with --from, then evaluated."""
    done, _ = walk_readme(tmp_path, real_weights=True)
    assert [c for c in readme_commands() if c not in SKIP or SKIP[c].startswith("slow:")] == done
