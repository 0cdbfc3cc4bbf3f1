"""Offline and failing downloads: no retry of what waiting cannot fix (no DNS, refused
connection), visible retries of what it can (timeouts, 5xx, drops), the manual way out, Ctrl-C."""

from __future__ import annotations

import copy
import socket

import pytest
import requests
import urllib3
from fetch_support import checkpoint_bytes, fetch_env, pick_row, write_manifest  # noqa: F401 - fixture
from http_server import FileServer, unused_port
from typer.testing import CliRunner

import repro.fetch.download as download
from repro.cli import app
from repro.errors import FetchError
from repro.fetch.download import download_first_working

runner = CliRunner()
DATA = bytes(range(256)) * 1200
UNRESOLVABLE = "http://nonexistent.invalid/f.bin"  # .invalid never resolves (RFC 2606)


@pytest.fixture
def gets(monkeypatch) -> list[str]:
    """Every connection attempt, as the URL it was for (counted below any retry layer)."""
    calls: list[str] = []
    current = {"url": ""}
    real_get = requests.Session.get
    real_connect = urllib3.util.connection.create_connection

    def get(self, url, *args, **kwargs):
        current["url"] = url
        return real_get(self, url, *args, **kwargs)

    def connect(*args, **kwargs):
        calls.append(current["url"])
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(requests.Session, "get", get)
    monkeypatch.setattr(urllib3.util.connection, "create_connection", connect)
    return calls


def _keep(_result) -> None:
    pass


def test_dns_failure_and_refused_connection_fail_at_once_then_the_next_url(fetch_env, tmp_path, gets, capfd):
    refused = f"http://127.0.0.1:{unused_port()}/f.bin"
    with FileServer() as server:
        good = server.add("/f.bin", DATA)
        dest, _, attempts = download_first_working(
            [UNRESOLVABLE, refused, good], lambda _u: tmp_path / "f.bin", _keep, what="test file"
        )
    assert dest.read_bytes() == DATA
    assert gets == [UNRESOLVABLE, refused, good]  # one attempt each: nothing retried
    assert [a.reason for a in attempts] == [
        "cannot connect (host name not resolved: offline or no DNS)",
        "cannot connect (connection refused)",
    ]
    assert "retry" not in capfd.readouterr().err


def test_a_timeout_is_retried_and_each_retry_is_announced(fetch_env, tmp_path, gets, monkeypatch, capfd):
    monkeypatch.setattr(download, "READ_TIMEOUT_S", 0.2)
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/f.bin"
        with pytest.raises(FetchError, match="timed out"):
            download_first_working([url], lambda _u: tmp_path / "f.bin", _keep, what="test file")
    assert len(gets) == 1 + download.HTTP_RETRIES
    retries = [line.strip() for line in capfd.readouterr().err.splitlines() if "retry" in line]
    assert [line.split(": cannot connect")[0] for line in retries] == [
        f"f.bin: retry {n}/{download.HTTP_RETRIES} in 0 s" for n in range(1, download.HTTP_RETRIES + 1)
    ]


def test_5xx_and_429_are_retried_with_the_wait_shown(fetch_env, tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(download, "RETRY_BACKOFF_S", 0.001)
    with FileServer() as server:
        url = server.add("/f.bin", DATA, statuses_first=[503, 429])
        dest, _, _ = download_first_working([url], lambda _u: tmp_path / "f.bin", _keep, what="test file")
    assert dest.read_bytes() == DATA
    retries = [line.strip() for line in capfd.readouterr().err.splitlines() if "retry" in line]
    assert retries == [
        "f.bin: retry 1/2 in 0.001 s: HTTP 503 Service Unavailable",
        "f.bin: retry 2/2 in 0.002 s: HTTP 429 Too Many Requests",
    ]


def test_a_drop_mid_body_is_announced_as_a_retry(fetch_env, tmp_path, capfd):
    with FileServer() as server:
        url = server.add("/f.bin", DATA, drop_after=100_000)
        download_first_working([url], lambda _u: tmp_path / "f.bin", _keep, what="test file")
    err = capfd.readouterr().err
    assert f"f.bin: retry 1/{download.RESUME_ATTEMPTS} in 0 s: connection dropped at 100.0 KB" in err


def test_offline_checkpoint_fetch_tries_each_url_once_and_says_what_to_do(fetch_env, monkeypatch, gets):
    row = copy.deepcopy(pick_row("mcibi", "ade20k"))
    refused = f"http://127.0.0.1:{unused_port()}/models/{row['id']}.pth"
    row["weights"] = [UNRESOLVABLE, refused]
    write_manifest(fetch_env, monkeypatch, [row])
    result = runner.invoke(app, ["fetch", row["id"], "--weights-only", "--no-progress"])
    assert result.exit_code == 1
    assert gets == [UNRESOLVABLE, refused]
    lines = result.stderr.splitlines()
    assert "retry" not in result.stderr and "skipped" not in result.stderr
    start = next(i for i, line in enumerate(lines) if line.startswith("error: "))
    assert lines[start - 3:start] == [f"  {UNRESOLVABLE}", f"  {refused}", f"then: repro fetch {row['id']} --from FILE"]
    error = " ".join(line.strip() for line in lines[start:])  # hosts and reasons, neither the URLs again nor the command
    assert error.startswith(f"error: could not download the checkpoint of {row['id']}: ")
    assert UNRESOLVABLE not in error and "--from" not in error and "127.0.0.1" in error
    assert all(len(line) <= 80 for line in lines[start:])
    assert not (fetch_env / "cache" / "checkpoints" / row["id"]).exists()


def test_offline_fetch_of_a_row_says_each_source_once_one_reason_then_the_from_line(fetch_env, monkeypatch, gets):
    """Issue 25 #9: offline, `repro fetch ID` printed 17 lines, each dataset URL three times and a
    last line of 519 characters. Now: per item one line per source, the --from line, one reason."""
    import dataclasses

    from repro.datasets.registry import DATASETS
    from repro.datasets.sources import Archive

    row = copy.deepcopy(pick_row("mcibi", "ade20k"))
    row["weights"] = ["http://weights.invalid/m.pth"]
    write_manifest(fetch_env, monkeypatch, [row])
    spec = DATASETS["ade20k"]
    official = dataclasses.replace(spec.sources[1], archives=(Archive(("http://official.invalid/ADE.zip",)),))
    monkeypatch.setitem(DATASETS, "ade20k", dataclasses.replace(spec, sources=(spec.sources[0], official)))
    monkeypatch.setenv("REPRO_MIRROR", "http://mirror.invalid/")
    result = runner.invoke(app, ["fetch", row["id"]], env={"COLUMNS": "80"})
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(gets) == 3 and len(lines) <= 14, result.stderr
    for url in [row["weights"][0], *spec.manual.split()]:  # every URL to download by hand, once
        if url.startswith("http"):
            assert result.stderr.count(url) == 1, url
    reason = "(host name not resolved: offline or no DNS)"
    assert result.stderr.count(reason) == 2  # once per item, in its error
    assert lines.index(f"then: repro fetch {row['id']} --from FILE") < lines.index(
        f"error: could not download the checkpoint of {row['id']}:")
    assert "then: repro fetch --dataset ade20k --from FILE [--from FILE ...]" in lines
    errors = " ".join(line.strip() for line in lines[lines.index("then: repro fetch --dataset ade20k --from FILE "
                                                                 "[--from FILE ...]") + 1:])
    assert errors == ("error: could not download ADE20k: mirror.invalid, official.invalid: cannot connect "
                      f"{reason} error: 2 of 2 items failed: {row['id']}, ade20k")
    assert all(len(line) <= 80 for line in lines if "http" not in line)


def test_ctrl_c_keeps_the_part_says_how_to_resume_and_exits_130(fetch_env, monkeypatch):
    ckpt = checkpoint_bytes(150, padding=80_000)
    row = copy.deepcopy(pick_row("mcibi", "ade20k"))
    real_read1 = urllib3.response.HTTPResponse.read1
    reads = {"n": 0}

    def interrupted_stream(self, *args, **kwargs):
        reads["n"] += 1
        if reads["n"] == 3:  # some bytes reached the disk, then Ctrl-C
            raise KeyboardInterrupt
        return real_read1(self, *args, **kwargs)

    monkeypatch.setattr(download, "CHUNK_SIZE", 64 * 1024)
    with FileServer() as server:
        row["weights"] = [server.add("/k.pth", ckpt)]
        write_manifest(fetch_env, monkeypatch, [row])
        with monkeypatch.context() as patch:
            patch.setattr(urllib3.response.HTTPResponse, "read1", interrupted_stream)
            result = runner.invoke(app, ["fetch", row["id"], "--weights-only", "--no-progress"])
        assert result.exit_code == 130
        assert result.stderr.strip().splitlines()[-1] == "interrupted; run the same command to resume"
        part = fetch_env / "cache" / "checkpoints" / row["id"] / "k.pth.part"
        kept = part.stat().st_size
        assert 0 < kept < len(ckpt) and part.read_bytes() == ckpt[:kept]
        again = runner.invoke(app, ["fetch", row["id"], "--weights-only", "--no-progress"])
        log = server.requests_for("/k.pth")
    assert again.exit_code == 0, again.output
    assert [r.range_start for r in log] == [None, kept]  # the same command resumed
    assert (fetch_env / "cache" / "checkpoints" / row["id"] / "k.pth").read_bytes() == ckpt
