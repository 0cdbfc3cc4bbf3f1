"""Resumable, verified HTTP downloads.

A file is streamed into `<name>.part` next to its destination while its sha256 is computed;
only a complete, verified file is renamed into place (the caller does the rename once its own
checks pass). Transient failures before the body starts (timeouts, resets, 5xx, 429) are retried
with backoff, each retry announced on stderr; a name-resolution failure or a refused connection
fails the URL at once (offline: no point waiting). A connection that drops mid-body is resumed
with an HTTP Range request from the size of the `.part` (re-hashing what is already on disk), or
restarted when the server ignores Range. An interrupted run keeps its `.part` for the next one.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3
from filelock import FileLock, Timeout
from requests.adapters import HTTPAdapter

from repro import __version__
from repro.errors import FetchError
from repro.fileio import file_sha256
from repro.fetch.progress import (  # noqa: F401 - LineProgress, RichProgress re-exported for the fetch modules
    LineProgress,
    Progress,
    RichProgress,
    human_size,
    make_progress,
    quiet,
    say,
)
from repro.paths import cache_home

# Tunables (tests set the backoffs to 0 so that fault-injection runs take no time).
CHUNK_SIZE = 1 << 20
CONNECT_TIMEOUT_S = 20.0
READ_TIMEOUT_S = 60.0
HTTP_RETRIES = 4  # retries of transient failures (timeouts, resets, 5xx, 429) before the body starts
RETRY_BACKOFF_S = 1.0  # first pause between those retries; doubles: 1, 2, 4, 8 s
RESUME_ATTEMPTS = 8  # consecutive mid-body drops without progress before giving up on a URL
RESUME_BACKOFF_S = 2.0  # first pause before a resume; doubles, capped at RESUME_BACKOFF_MAX_S
RESUME_BACKOFF_MAX_S = 60.0
DISK_MARGIN_BYTES = 100 * 1024 * 1024  # keep this much free beyond the file itself
RETRY_STATUSES = (429, 500, 502, 503, 504)
GITHUB_BASE = "https://github.com/"


# ----------------------------------------------------------------------------------- errors


class UrlFailed(Exception):
    """This URL cannot deliver the file; the caller moves on to the next one."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class DiskSpaceError(FetchError):
    """Not enough free disk space (checked before writing)."""


class DiskFullError(DiskSpaceError):
    """The disk filled up while writing (the partial file has been removed)."""


@contextmanager
def exclusive(name: str, what: str) -> Iterator[None]:
    """Inter-process lock (<cache>/.locks/<name>.lock) so two runs never write the same files."""
    folder = cache_home() / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / f"{name}.lock"))
    try:
        lock.acquire(timeout=1)
    except Timeout:
        say(f"waiting for another repro process that is fetching {what} ...", always=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


# ------------------------------------------------------------------------------------ URLs


def mirror_url(url: str, mirror: str | None = None) -> str:
    """Rewrite the `https://github.com/` base of a GitHub release URL to a mirror.

    The mirror comes from the argument, else $REPRO_MIRROR; other URLs pass unchanged.
    """
    mirror = mirror or os.environ.get("REPRO_MIRROR") or None
    if not mirror or not url.startswith(GITHUB_BASE) or "/releases/download/" not in url:
        return url
    return mirror.rstrip("/") + "/" + url[len(GITHUB_BASE) :]


def file_name_from_url(url: str) -> str:
    name = url.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    if not name or name in (".", ".."):
        raise FetchError(f"cannot derive a file name from the URL {url}")
    return name


# --------------------------------------------------------------------------------- session


def make_session() -> requests.Session:
    """A requests session without hidden retries: `_open` retries what is worth retrying."""
    adapter = HTTPAdapter(max_retries=0)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"repro/{__version__} (+python-requests)"
    return session


def short_reason(exc: BaseException) -> str:
    """The innermost, human part of a requests/urllib3 exception chain."""
    text = str(exc)
    if "IncompleteRead" in text:
        return "connection closed early"
    for pattern in (
        r"Failed to establish a new connection: \[Errno -?\d+\] ([^'\")]+)",
        r"\[Errno -?\d+\] ([^'\")]+)",
        r"(Read timed out)",
        r"(Connection broken: [^'\")]+)",
        r"(Max retries exceeded)",
    ):
        match = re.search(pattern, text)
        if match:
            return match.group(1).strip().rstrip(".")
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception it wraps (cause, context, urllib3's `reason`, args)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        todo += [e for e in linked if isinstance(e, BaseException)]


_NO_ROUTE = {errno.ENETUNREACH, errno.EHOSTUNREACH}


def permanent_reason(exc: BaseException) -> str | None:
    """Why a connection failure cannot be fixed by waiting (no DNS, refused, no route), or None."""
    for cause in _causes(exc):
        if isinstance(cause, (socket.gaierror, urllib3.exceptions.NameResolutionError)):
            return "host name not resolved: offline or no DNS"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, OSError) and cause.errno in _NO_ROUTE:
            return "no route to the network: offline?"
        if isinstance(cause, requests.exceptions.SSLError):
            return f"TLS error: {short_reason(cause)}"
    return None


def _retry_after(response: requests.Response) -> float | None:
    """The server's Retry-After in seconds (numeric form only), or None."""
    value = response.headers.get("Retry-After", "")
    return float(value) if value.strip().isdigit() else None


def _announce_retry(label: str, number: int, limit: int, wait: float, reason: str) -> None:
    say(f"  {label}: retry {number}/{limit} in {wait:g} s: {reason}", always=True)


def _open(
    session: requests.Session, url: str, headers: dict, label: str, sleep: Callable[[float], None]
) -> requests.Response:
    """GET `url` (streamed); transient failures are retried with backoff, each one announced.

    Raises UrlFailed at once for failures a retry cannot fix (no DNS, refused, no route, TLS),
    and after HTTP_RETRIES retries for the others. Answers other than 5xx/429 are returned.
    """
    for attempt in range(HTTP_RETRIES + 1):
        wait = None
        try:
            response = session.get(
                url, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
            )
        except requests.exceptions.RequestException as err:
            permanent = permanent_reason(err)
            if permanent:
                raise UrlFailed(f"cannot connect ({permanent})") from None
            reason = f"cannot connect ({short_reason(err)})"
        else:
            if response.status_code not in RETRY_STATUSES:
                return response
            reason = f"HTTP {response.status_code} {response.reason or ''}".strip()
            wait = _retry_after(response)
            response.close()
        if attempt == HTTP_RETRIES:
            raise UrlFailed(reason)
        wait = min(RETRY_BACKOFF_S * 2**attempt if wait is None else wait, RESUME_BACKOFF_MAX_S)
        _announce_retry(label, attempt + 1, HTTP_RETRIES, wait, reason)
        sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


# -------------------------------------------------------------------------------- download


@dataclass
class DownloadResult:
    path: Path  # the completed `.part` file (not yet renamed)
    sha256: str
    size: int
    url: str
    notes: list[str] = field(default_factory=list)


def part_path_for(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _hash_existing(path: Path) -> tuple[hashlib._Hash, int]:
    hasher = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            hasher.update(chunk)
            size += len(chunk)
    return hasher, size


def _content_range(response: requests.Response) -> tuple[int, int | None] | None:
    """(first byte, total size or None) of a 206 answer; None when the header is unusable."""
    match = re.match(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", ""))
    if not match:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None or response.headers.get("Content-Encoding", "identity") != "identity":
        return None
    try:
        return int(value)
    except ValueError:
        return None


def check_disk_space(folder: Path, needed: int | None, what: str) -> None:
    """Fail before writing when `folder`'s file system cannot hold `needed` more bytes."""
    if not needed:
        return
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed + DISK_MARGIN_BYTES:
        raise DiskSpaceError(
            f"not enough disk space for {what}: it needs {human_size(needed)} "
            f"(+{human_size(DISK_MARGIN_BYTES)} margin) but {folder} has {human_size(free)} free; "
            "free some space or point REPRO_HOME / --data-root elsewhere"
        )


def _is_disk_full(err: OSError) -> bool:
    return err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def disk_full_error(path: Path, err: OSError) -> DiskFullError:
    return DiskFullError(
        f"disk full while writing {path.name} in {path.parent} ({os.strerror(err.errno)}); "
        "the partial file was removed: free some space and run the command again"
    )


def _write_chunk(handle, chunk: bytes) -> None:
    """The one place bytes hit the disk (tests replace it to simulate a full disk)."""
    handle.write(chunk)


# What a read from the socket may raise when the connection breaks (all end in a resume);
# socket errors and timeouts are OSErrors (writes are guarded separately).
_NETWORK_ERRORS = (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError)


class _Transfer:
    """The state of one download into a `.part`: bytes on disk, their digest, progress."""

    def __init__(self, part: Path, progress: Progress, label: str):
        self.part, self.progress, self.label = part, progress, label
        self.notes: list[str] = []
        self.use_range = True
        self.started = False
        self.total: int | None = None
        if part.exists():
            self.hasher, self.offset = _hash_existing(part)  # resume: the digest covers the old bytes
        else:
            self.hasher, self.offset = hashlib.sha256(), 0

    def reset(self) -> None:
        with open(self.part, "wb"):
            pass
        self.hasher, self.offset = hashlib.sha256(), 0
        self.progress.restart(0)

    def headers(self) -> dict:
        """Headers of the next request: a Range from what is on disk (restarted when Range is off)."""
        if self.offset and not self.use_range:
            self.reset()
        ranged = {"Range": f"bytes={self.offset}-"} if self.offset else {}
        return {**ranged, "Accept-Encoding": "identity"}  # byte offsets = file offsets

    def begin(self, total: int | None) -> None:
        self.total = total
        remaining = None if total is None else total - self.offset
        check_disk_space(self.part.parent, remaining, self.label)
        if not self.started:
            self.progress.start(self.label, total, self.offset)
            self.started = True
        else:
            self.progress.restart(self.offset)

    def receive(self, response: requests.Response) -> str:
        """Append the body to the `.part`; the reason it stopped early, or "" when it ended."""
        try:
            handle = open(self.part, "ab")
        except OSError as err:
            raise FetchError(f"cannot write {self.part}: {err.strerror or err}") from None
        with handle:
            while True:
                try:
                    # read1: whatever arrived before a drop is kept, not lost in a buffer
                    chunk = response.raw.read1(CHUNK_SIZE, decode_content=True)
                except _NETWORK_ERRORS as err:
                    return short_reason(err)
                if not chunk:
                    return ""
                self._write(handle, chunk)

    def _write(self, handle, chunk: bytes) -> None:
        try:
            _write_chunk(handle, chunk)
        except OSError as err:
            if _is_disk_full(err):
                raise disk_full_error(self.part, err) from None
            raise FetchError(f"cannot write {self.part}: {err.strerror or err}") from None
        self.hasher.update(chunk)
        self.offset += len(chunk)
        self.progress.advance(len(chunk))


def _start_body(transfer: _Transfer, response: requests.Response) -> bool:
    """Check the answer and set up the transfer; False when the request must be made again."""
    status = response.status_code
    if status == 416 and transfer.offset:
        # What we hold is not a prefix of this file (it shrank or changed): start over.
        transfer.notes.append("server refused the resume offset; restarted from zero")
        transfer.reset()
        return False
    if status >= 400:
        raise UrlFailed(f"HTTP {status} {response.reason or ''}".strip())
    if status not in (200, 206):
        raise UrlFailed(f"unexpected HTTP {status}")
    if status == 206:
        span = _content_range(response)
        if span is None or span[0] != transfer.offset:
            if not transfer.offset or not transfer.use_range:  # no Range was asked: asking again loops
                raise UrlFailed("server answered a wrong byte range")
            transfer.notes.append("server answered a wrong byte range; restarted without resume")
            transfer.use_range = False
            return False
        transfer.begin(span[1])
        return True
    if transfer.offset:
        # The server ignored Range and is sending the whole file: restart cleanly.
        transfer.notes.append("server does not support resuming (HTTP Range); restarted")
        say(f"  {transfer.label}: server does not support resume, restarting from zero", always=True)
        transfer.reset()
    transfer.begin(_content_length(response))
    return True


def _stop_reason(transfer: _Transfer, reason: str) -> str:
    """"" when the body is complete; else why it is not (UrlFailed when it cannot be)."""
    offset, total = transfer.offset, transfer.total
    if reason:
        return reason
    if total is None or offset == total:
        return ""
    if offset > total:
        raise UrlFailed(f"server sent {offset} bytes, more than the {total} announced")
    return f"stream ended at byte {offset} of {total}"


def download_to_part(
    url: str,
    part: Path,
    *,
    session: requests.Session | None = None,
    progress: Progress | None = None,
    label: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DownloadResult:
    """Stream `url` into `part`, resuming from what `part` already holds.

    Raises `UrlFailed` when this URL cannot deliver (HTTP error, unreachable, keeps dropping),
    `DiskFullError` / `FetchError` for local problems. The `.part` is left for the caller to
    verify, rename or delete (and kept when interrupted, for the next run to resume).
    """
    session = session or make_session()
    part.parent.mkdir(parents=True, exist_ok=True)
    transfer = _Transfer(part, progress or Progress(), label or part.name.removesuffix(".part"))
    drops_in_a_row = 0
    high_water = transfer.offset  # progress = getting further than ever (a restart from zero is not)
    try:
        while True:
            with _open(session, url, transfer.headers(), transfer.label, sleep) as response:
                if not _start_body(transfer, response):
                    continue
                reason = _stop_reason(transfer, transfer.receive(response))
            if not reason:
                transfer.progress.finish()
                return DownloadResult(part, transfer.hasher.hexdigest(), transfer.offset, url, transfer.notes)
            # The connection dropped mid-body: resume from what is on disk.
            drops_in_a_row = 1 if transfer.offset > high_water else drops_in_a_row + 1
            high_water = max(high_water, transfer.offset)
            _pause_before_resume(transfer, drops_in_a_row, reason, sleep)
    except BaseException:
        if transfer.started:
            transfer.progress.abort()
        raise


def _pause_before_resume(transfer: _Transfer, drops: int, reason: str, sleep: Callable[[float], None]) -> None:
    """Announce and wait before resuming; UrlFailed after RESUME_ATTEMPTS drops without progress."""
    where = f"byte {transfer.offset}" + (f" of {transfer.total}" if transfer.total else "")
    if drops > RESUME_ATTEMPTS:
        raise UrlFailed(f"connection kept dropping ({reason}) at {where}")
    transfer.notes.append(f"connection dropped at byte {transfer.offset} ({reason}); resumed")
    wait = min(RESUME_BACKOFF_S * 2 ** (drops - 1), RESUME_BACKOFF_MAX_S)
    dropped = f"connection dropped at {human_size(transfer.offset)} ({reason}); resuming"
    _announce_retry(transfer.label, drops, RESUME_ATTEMPTS, wait, dropped)
    sleep(wait)


# ------------------------------------------------------------------------- copy (imports)


def copy_to_part(source: Path, part: Path, *, progress: Progress | None = None) -> DownloadResult:
    """Copy a local file into `part` while hashing it (the `--from` import path)."""
    progress = progress or Progress()
    part.parent.mkdir(parents=True, exist_ok=True)
    size = source.stat().st_size
    check_disk_space(part.parent, size, source.name)
    hasher = hashlib.sha256()
    progress.start(source.name, size, 0, verb="importing")
    try:
        with open(source, "rb") as reader, open(part, "wb") as writer:
            while chunk := reader.read(CHUNK_SIZE):
                _write_chunk(writer, chunk)
                hasher.update(chunk)
                progress.advance(len(chunk))
    except OSError as err:
        progress.abort()
        part.unlink(missing_ok=True)
        if _is_disk_full(err):
            raise disk_full_error(part, err) from None
        raise FetchError(f"cannot copy {source}: {err.strerror or err}") from None
    except BaseException:
        progress.abort()
        part.unlink(missing_ok=True)
        raise
    progress.finish()
    return DownloadResult(part, hasher.hexdigest(), size, str(source))


def sha256_of(path: Path) -> str:
    return file_sha256(path)


# sha256 per (resolved path, size, mtime), computed once per process in a background thread.
_digests: dict[tuple[str, int, int], Future] = {}
_digests_lock = threading.Lock()


def start_file_digest(path: str | os.PathLike) -> None:
    """Begin hashing `path` in a background thread (hashlib releases the GIL), so that a later
    `file_digest` finds it done: the CLI starts a checkpoint's hash before torch is imported,
    and the next model's while the current one is evaluated. A missing file is ignored here."""
    try:
        _digest_future(Path(path))
    except OSError:
        pass


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file, computed once per path, size and mtime within the process."""
    return _digest_future(Path(path)).result()


def _digest_future(path: Path) -> Future:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _digests_lock:
        future = _digests.get(key)
        if future is None:
            future = _digests[key] = Future()
            threading.Thread(target=_digest_into, args=(path, key, future), name="repro-sha256", daemon=True).start()
    return future


def _digest_into(path: Path, key: tuple[str, int, int], future: Future) -> None:
    try:
        future.set_result(sha256_of(path))
    except BaseException as err:  # raised by file_digest; the next call tries again
        with _digests_lock:
            _digests.pop(key, None)
        future.set_exception(err)


# ------------------------------------------------------------------------ URL list driver


@dataclass
class Attempt:
    url: str
    reason: str


def describe_attempts(attempts: Iterable[Attempt]) -> str:
    return "; ".join(f"{a.url} ({a.reason})" for a in attempts)


def describe_hosts(attempts: Iterable[Attempt]) -> str:
    """'github.com, data.csail.mit.edu: cannot connect (...)': each reason once, after the hosts
    that failed for it, for a short error line when the URLs themselves are printed whole
    elsewhere (offline, every URL fails for one reason: it is said once)."""
    hosts_by_reason: dict[str, list[str]] = {}
    for attempt in attempts:
        hosts = hosts_by_reason.setdefault(attempt.reason, [])
        host = urlsplit(attempt.url).netloc or attempt.url
        if host not in hosts:
            hosts.append(host)
    return "; ".join(f"{', '.join(hosts)}: {reason}" for reason, hosts in hosts_by_reason.items())


class DownloadFailed(FetchError):
    """No source of a checkpoint or dataset could be downloaded. The fetcher printed the URLs and
    the `--from` line whole before raising; the message holds only hosts and reasons, so the CLI
    may wrap it to the width (repro.cli.fetch)."""


class AllUrlsFailed(FetchError):
    """Every URL failed; `attempts` says how (the caller may word the line itself)."""

    def __init__(self, what: str, attempts: list[Attempt]):
        super().__init__(f"could not fetch {what}: tried {describe_attempts(attempts)}")
        self.attempts = attempts


def download_first_working(
    urls: list[str],
    dest_for: Callable[[str], Path],
    verify: Callable[[DownloadResult], None],
    *,
    what: str,
    progress: Progress | None = None,
    session: requests.Session | None = None,
) -> tuple[Path, DownloadResult, list[Attempt]]:
    """Try each URL in order until one delivers a file that `verify` accepts.

    `verify` raises `UrlFailed` to reject a complete download (wrong digest, wrong content); the
    `.part` is then deleted and the next URL tried, silently: the caller says what failed, once
    (all failed: `AllUrlsFailed.attempts`; one worked: the returned attempts). The accepted
    `.part` is renamed atomically to its destination. Nothing partial remains when this raises.
    """
    session = session or make_session()
    attempts: list[Attempt] = []
    for url in urls:
        dest = dest_for(url)
        part = part_path_for(dest)
        try:
            result = download_to_part(url, part, session=session, progress=progress, label=dest.name)
            verify(result)
        except UrlFailed as failure:
            part.unlink(missing_ok=True)
            attempts.append(Attempt(url, failure.reason))
            continue
        except FetchError:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, dest)
        result.path = dest
        return dest, result, attempts
    if not urls:
        raise FetchError(f"{what}: no download URL is known")
    raise AllUrlsFailed(what, attempts)
