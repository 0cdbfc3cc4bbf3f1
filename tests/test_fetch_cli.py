"""`repro fetch` through Typer's CliRunner against a loopback server."""

from __future__ import annotations

import copy
import hashlib
import io
import tarfile

from fetch_support import GITHUB_CKPT, checkpoint_bytes, fetch_env, pick_row, write_manifest  # noqa: F401
from http_server import FileServer
from typer.testing import CliRunner

import repro.fetch.datasets as fetch_datasets
from repro.cli import app
from repro.manifest import load_manifest

runner = CliRunner()
RELEASE_PATH = "/gh/SegmentationBLWX/modelstore/releases/download/ssseg_datasets/"


def test_where_prints_the_cache_folder(fetch_env):
    result = runner.invoke(app, ["fetch", "--where"])
    assert result.exit_code == 0
    assert result.stdout.strip() == str(fetch_env / "cache")


def test_unknown_id_exits_2_with_suggestion(fetch_env):
    real_id = load_manifest().ids()[0]
    result = runner.invoke(app, ["fetch", real_id + "x", "--weights-only"])
    assert result.exit_code == 2
    assert f"did you mean {real_id}" in result.stderr and "Traceback" not in result.output


def test_weights_only_with_mirror_and_plain_output(fetch_env, monkeypatch):
    row = copy.deepcopy(pick_row("mcibi", "ade20k"))
    file_name = row["weights"][0].rsplit("/", 1)[-1]
    assert row["weights"][0] == GITHUB_CKPT + file_name  # the real row points at the GitHub release
    ckpt = checkpoint_bytes(150)
    with FileServer() as server:
        server.add("/gh/SegmentationBLWX/modelstore/releases/download/ssseg_mcibi/" + file_name, ckpt)
        write_manifest(fetch_env, monkeypatch, [row])
        result = runner.invoke(app, ["fetch", row["id"], "--weights-only", "--mirror", server.url("/gh")])
    assert result.exit_code == 0, result.output
    path = fetch_env / "cache" / "checkpoints" / row["id"] / file_name
    assert result.stdout.strip() == f"{row['id']}: {path}"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(ckpt).hexdigest()
    assert "\r" not in result.stderr and "\x1b[" not in result.stderr  # not a TTY: plain lines


def test_id_fetches_weights_and_the_rows_dataset(fetch_env, monkeypatch):
    monkeypatch.setattr(fetch_datasets, "_layout_problems", lambda name, folder, allow_subset=False: [])
    row = copy.deepcopy(pick_row("mcibi", "ade20k"))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("ADE20k/ADEChallengeData2016/images/validation/a.jpg")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
        info = tarfile.TarInfo("ADE20k/ADEChallengeData2016/annotations/validation/a.png")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"y"))
    with FileServer() as server:
        row["weights"] = [server.add("/w.pth", checkpoint_bytes(150))]
        server.add(RELEASE_PATH + "ADE20k.tar.gz", buffer.getvalue())
        write_manifest(fetch_env, monkeypatch, [row])
        monkeypatch.setenv("REPRO_MIRROR", server.url("/gh"))
        result = runner.invoke(app, ["fetch", row["id"], "--no-progress"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines == [
        f"{row['id']}: {fetch_env / 'cache' / 'checkpoints' / row['id'] / 'w.pth'}",
        f"ade20k: {fetch_env / 'data' / 'ADE20k'}",
    ]
    assert result.stderr == ""  # --no-progress


def test_failure_is_one_line_and_exit_1(fetch_env, monkeypatch):
    row = copy.deepcopy(pick_row("mcibi", "ade20k"))
    with FileServer() as server:
        row["weights"] = [server.url("/missing.pth")]
        write_manifest(fetch_env, monkeypatch, [row])
        result = runner.invoke(app, ["fetch", row["id"], "--weights-only", "--no-progress"])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("error: "))
    manual, error = lines[:start], " ".join(line.strip() for line in lines[start:])  # wrapped at 80
    assert error.startswith(f"error: could not download the checkpoint of {row['id']}: ") and "HTTP 404" in error
    assert row["weights"][0] not in error  # printed whole above, not repeated
    # Before the error: the URLs to download by hand and the import command, whole, one per line.
    assert manual == [
        f"{row['id']}: download the checkpoint by hand from:",
        f"  {row['weights'][0]}",
        f"then: repro fetch {row['id']} --from FILE",
    ]


def test_manual_steps_and_option_errors(fetch_env):
    result = runner.invoke(app, ["fetch", "--dataset", "cityscapes", "--manual"])
    assert result.exit_code == 0
    assert "gtFine_trainvaltest.zip" in result.stdout and "cityscapes-dataset.com" in result.stdout
    assert runner.invoke(app, ["fetch", "--weights-only", "--data-only", "--dataset", "lip"]).exit_code == 2
    assert runner.invoke(app, ["fetch"]).exit_code == 2
    bad = runner.invoke(app, ["fetch", "--dataset", "cityscape"])
    assert bad.exit_code == 2 and "did you mean cityscapes" in bad.stderr


def test_pin_writes_a_manifest_copy(fetch_env, monkeypatch, tmp_path):
    row = copy.deepcopy(pick_row("mcibi", "lip"))
    ckpt = checkpoint_bytes(20)
    with FileServer() as server:
        row["weights"] = [server.add("/lip.pth", ckpt)]
        write_manifest(fetch_env, monkeypatch, [row])
        assert runner.invoke(app, ["fetch", row["id"], "--weights-only"]).exit_code == 0
    out = tmp_path / "pinned.yaml"
    result = runner.invoke(app, ["fetch", "--pin", str(out)])
    assert result.exit_code == 0, result.output
    assert load_manifest(out).get(row["id"]).sha256 == hashlib.sha256(ckpt).hexdigest()
