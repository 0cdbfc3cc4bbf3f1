"""HTTP download layer against a loopback server with injected faults (no internet)."""

from __future__ import annotations

import errno
import hashlib
import os

import pytest
from fetch_support import fetch_env  # noqa: F401 - fixture
from http_server import FileServer, unused_port

import repro.fetch.download as download
from repro.errors import FetchError
from repro.fetch.download import (
    UrlFailed,
    download_first_working,
    download_to_part,
    mirror_url,
    part_path_for,
)

DATA = bytes(range(256)) * 1200  # 307200 bytes, every offset distinguishable mod 256
DIGEST = hashlib.sha256(DATA).hexdigest()


def _accept(_result) -> None:
    pass


def test_plain_download_hashes_while_streaming(fetch_env, tmp_path):
    with FileServer() as server:
        url = server.add("/f.bin", DATA)
        result = download_to_part(url, tmp_path / "f.bin.part")
    assert result.sha256 == DIGEST
    assert result.size == len(DATA)
    assert (tmp_path / "f.bin.part").read_bytes() == DATA


def test_dropped_connection_resumes_from_the_received_byte(fetch_env, tmp_path):
    with FileServer() as server:
        url = server.add("/f.bin", DATA, drop_after=100_000, drop_times=2)
        dest, result, attempts = download_first_working(
            [url], lambda _u: tmp_path / "f.bin", _accept, what="test file"
        )
        log = server.requests_for("/f.bin")
    assert dest.read_bytes() == DATA
    assert result.sha256 == DIGEST and attempts == []
    assert [r.range_start for r in log] == [None, 100_000, 200_000]
    assert [r.status for r in log] == [200, 206, 206]
    assert not part_path_for(dest).exists()


def test_part_left_by_a_crash_is_continued_and_rehashed(fetch_env, tmp_path):
    part = tmp_path / "f.bin.part"
    part.write_bytes(DATA[:123_457])
    with FileServer() as server:
        url = server.add("/f.bin", DATA)
        result = download_to_part(url, part)
        log = server.requests_for("/f.bin")
    assert [r.range_start for r in log] == [123_457]
    assert result.sha256 == DIGEST  # the digest covers the bytes that were already on disk
    assert part.read_bytes() == DATA


def test_server_ignoring_range_restarts_cleanly(fetch_env, tmp_path):
    with FileServer() as server:
        url = server.add("/f.bin", DATA, drop_after=50_000, range_support=False)
        result = download_to_part(url, tmp_path / "f.bin.part")
        log = server.requests_for("/f.bin")
    assert [(r.range_start, r.status) for r in log] == [(None, 200), (50_000, 200)]
    assert result.size == len(DATA) and result.sha256 == DIGEST
    assert (tmp_path / "f.bin.part").read_bytes() == DATA
    assert any("does not support resuming" in note for note in result.notes)


def test_part_longer_than_the_file_is_restarted(fetch_env, tmp_path):
    part = tmp_path / "f.bin.part"
    part.write_bytes(b"x" * (len(DATA) + 10))  # not a prefix of this file: server answers 416
    with FileServer() as server:
        url = server.add("/f.bin", DATA)
        result = download_to_part(url, part)
        log = server.requests_for("/f.bin")
    assert [r.status for r in log] == [416, 200]
    assert result.sha256 == DIGEST and part.read_bytes() == DATA


def test_5xx_is_retried_then_succeeds(fetch_env, tmp_path):
    with FileServer() as server:
        url = server.add("/f.bin", DATA, statuses_first=[500, 503])
        result = download_to_part(url, tmp_path / "f.bin.part")
        log = server.requests_for("/f.bin")
    assert [r.status for r in log] == [500, 503, 200]
    assert result.sha256 == DIGEST


def test_every_url_failing_lists_each_url_and_why(fetch_env, tmp_path):
    dead = f"http://127.0.0.1:{unused_port()}/f.bin"
    with FileServer() as server:
        missing = server.url("/missing.bin")
        broken = server.add("/broken.bin", DATA, always_status=500)
        with pytest.raises(FetchError) as err:
            download_first_working(
                [missing, broken, dead], lambda _u: tmp_path / "f.bin", _accept, what="test file"
            )
        tries_on_broken = len(server.requests_for("/broken.bin"))
    message = str(err.value)
    assert "\n" not in message
    assert f"{missing} (HTTP 404" in message
    assert f"{broken} (HTTP 500" in message
    assert f"{dead} (cannot connect" in message
    assert tries_on_broken == 1 + download.HTTP_RETRIES  # urllib3 Retry did retry the 5xx
    assert not any(tmp_path.glob("f.bin*"))


def test_404_moves_on_to_the_next_url(fetch_env, tmp_path):
    with FileServer() as server:
        first = server.url("/gone.bin")
        second = server.add("/f.bin", DATA)
        dest, _, attempts = download_first_working(
            [first, second], lambda u: tmp_path / u.rsplit("/", 1)[-1], _accept, what="test file"
        )
    assert dest == tmp_path / "f.bin" and dest.read_bytes() == DATA
    assert [(a.url, a.reason.split()[:2]) for a in attempts] == [(first, ["HTTP", "404"])]


def test_rejected_content_is_deleted(fetch_env, tmp_path):
    def reject(result):
        raise UrlFailed("sha256 mismatch: made up")

    with FileServer() as server:
        url = server.add("/f.bin", DATA)
        with pytest.raises(FetchError, match="sha256 mismatch"):
            download_first_working([url], lambda _u: tmp_path / "f.bin", reject, what="test file")
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()


def test_not_enough_disk_space_fails_before_writing(fetch_env, tmp_path, monkeypatch):
    class Usage:
        free = len(DATA)  # less than the file plus the safety margin

    monkeypatch.setattr(download.shutil, "disk_usage", lambda _p: Usage)
    with FileServer() as server:
        url = server.add("/f.bin", DATA)
        with pytest.raises(FetchError, match="not enough disk space"):
            download_first_working([url], lambda _u: tmp_path / "f.bin", _accept, what="test file")
    assert not (tmp_path / "f.bin.part").exists() and not (tmp_path / "f.bin").exists()


def test_full_disk_while_writing_removes_the_part(fetch_env, tmp_path, monkeypatch):
    real_write = download._write_chunk
    calls = {"n": 0}

    def write_then_fill_up(handle, chunk):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(handle, chunk)

    monkeypatch.setattr(download, "CHUNK_SIZE", 64 * 1024)
    monkeypatch.setattr(download, "_write_chunk", write_then_fill_up)
    with FileServer() as server:
        url = server.add("/f.bin", DATA)
        with pytest.raises(FetchError, match="disk full") as err:
            download_first_working([url], lambda _u: tmp_path / "f.bin", _accept, what="test file")
        assert "\n" not in str(err.value)
        assert not (tmp_path / "f.bin.part").exists()
        monkeypatch.setattr(download, "_write_chunk", real_write)  # space freed: a rerun works
        dest, result, _ = download_first_working([url], lambda _u: tmp_path / "f.bin", _accept, what="test file")
    assert dest.read_bytes() == DATA and result.sha256 == DIGEST


def test_mirror_rewrites_only_github_release_urls(monkeypatch):
    monkeypatch.delenv("REPRO_MIRROR", raising=False)
    release = "https://github.com/Org/store/releases/download/tag/file.pth"
    assert mirror_url(release, "https://mirror.example/gh/") == "https://mirror.example/gh/Org/store/releases/download/tag/file.pth"
    assert mirror_url(release, "https://mirror.example/gh") == "https://mirror.example/gh/Org/store/releases/download/tag/file.pth"
    other = "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"
    assert mirror_url(other, "https://mirror.example") == other
    assert mirror_url(release, None) == release
    monkeypatch.setenv("REPRO_MIRROR", "http://127.0.0.1:9/m")
    assert mirror_url(release) == "http://127.0.0.1:9/m/Org/store/releases/download/tag/file.pth"


def test_a_server_that_always_drops_and_ignores_range_is_given_up(fetch_env, tmp_path):
    # Each attempt restarts from zero and dies at the same byte: no progress, so it must end.
    with FileServer() as server:
        url = server.add("/f.bin", DATA, drop_after=1000, drop_times=10_000, range_support=False)
        with pytest.raises(UrlFailed, match="kept dropping"):
            download_to_part(url, tmp_path / "f.bin.part")
        attempts = len(server.requests_for("/f.bin"))
    assert attempts == download.RESUME_ATTEMPTS + 1


def test_a_206_without_a_usable_range_fails_the_url_instead_of_looping(fetch_env, tmp_path):
    import io

    import requests

    class Session:
        calls = 0

        def get(self, url, headers, **kwargs):
            self.calls += 1
            if self.calls > 20:
                raise AssertionError("still asking: the download loops")
            response = requests.Response()
            response.status_code, response.url = 206, url
            response.raw = io.BytesIO(DATA)  # and no Content-Range, whatever was asked
            return response

    session = Session()
    with pytest.raises(UrlFailed, match="wrong byte range"):
        download_to_part("http://example.invalid/f.bin", tmp_path / "f.bin.part", session=session)
    assert session.calls <= 2


def test_file_digest_is_the_sha256_once_per_path_size_and_mtime(tmp_path, monkeypatch):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"a" * 100_000)
    calls = []
    real = download.sha256_of
    monkeypatch.setattr(download, "sha256_of", lambda p: calls.append(p) or real(p))
    download.start_file_digest(path)  # in a thread; file_digest waits for it
    assert download.file_digest(path) == hashlib.sha256(b"a" * 100_000).hexdigest()
    assert download.file_digest(path) == download.file_digest(str(path))
    assert len(calls) == 1
    path.write_bytes(b"b" * 100_001)  # another file under the same name is hashed again
    assert download.file_digest(path) == hashlib.sha256(b"b" * 100_001).hexdigest()
    assert len(calls) == 2


def test_file_digest_of_a_missing_file_raises_and_starting_it_does_not(tmp_path):
    download.start_file_digest(tmp_path / "absent.pth")
    with pytest.raises(FileNotFoundError):
        download.file_digest(tmp_path / "absent.pth")


def test_a_failed_digest_is_not_kept(tmp_path, monkeypatch):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"x" * 10)
    monkeypatch.setattr(download, "sha256_of", lambda p: (_ for _ in ()).throw(PermissionError("denied")))
    with pytest.raises(PermissionError):
        download.file_digest(path)
    monkeypatch.undo()
    assert download.file_digest(path) == hashlib.sha256(b"x" * 10).hexdigest()
