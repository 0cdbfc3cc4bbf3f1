"""One run per result at a time: a lock file in the results folder.

`<folder>/.locks/<stem>.lock` is held with an OS lock (filelock; released by the kernel when the
holder dies, however it dies) and `<folder>/.locks/<stem>.json` says who holds it: pid, host,
since (a hidden folder: the lock files stay out of the way of the results). A
second run of the same result is refused with one line naming the holder, or waits for it
(`wait=True`). A holder record whose OS lock is free is left over from a run that ended without
cleaning up; it is taken over with a note (and "dead" named when its pid is gone on this host).

    with run_lock(results_folder, "mcibi_deeplabv3_r50_lip__flip", wait=False, note=print):
        ...  # evaluate and write the result
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

from repro.errors import ReproError
from repro.fileio import atomic_write_text

POLL_SECONDS = 1.0  # how often a waiting run looks at the lock
LOCKS_DIR = ".locks"


def lock_paths(folder: str | os.PathLike, stem: str) -> tuple[Path, Path]:
    """(the OS lock file, the holder record) of one result."""
    locks = Path(folder) / LOCKS_DIR
    return locks / f"{stem}.lock", locks / f"{stem}.json"


def read_holder(record: Path) -> dict | None:
    """The holder record {pid, host, since}, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_holder(holder: dict | None) -> str:
    if not holder:
        return "another run (no holder record)"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"


def pid_alive(pid: int) -> bool:
    """Whether a process of this host has this pid (a process of another user counts as alive)."""
    if pid <= 0:  # 0 and negatives address process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError):
        return False
    return True


@contextlib.contextmanager
def run_lock(
    folder: str | os.PathLike, stem: str, *, wait: bool = False, note: Callable[[str], None] | None = None,
) -> Iterator[Path]:
    """Hold the lock of result `stem` in `folder` for the block; yields the holder record's path.

    Held by another live run: ReproError (exit 1) naming it, or with `wait` block until it ends
    (`note` says once whom it waits for). A left-over record is taken over with a note.
    """
    say = note or (lambda message: None)
    lock_file, record = lock_paths(folder, stem)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_file)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = describe_holder(_holder_of_a_held_lock(record))
        if not wait:
            raise ReproError(f"{stem} is being evaluated by {holder}; wait with --wait-lock") from None
        say(f"{stem} is being evaluated by {holder}; waiting for it to finish")
        lock.acquire(poll_interval=POLL_SECONDS)
    try:
        _take_over(read_holder(record), stem, say)
        atomic_write_text(record, json.dumps(_me()) + "\n")
        yield record
    finally:
        with contextlib.suppress(OSError):
            if (read_holder(record) or {}).get("pid") == os.getpid():
                record.unlink()
        lock.release()


def _holder_of_a_held_lock(record: Path) -> dict | None:
    """The holder record of a lock found held: a run that took the lock a moment ago may not have
    written its record yet (two runs started together), so look again for a second."""
    for _ in range(20):
        holder = read_holder(record)
        if holder is not None:
            return holder
        time.sleep(0.05)
    return None


def _me() -> dict:
    since = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": since}


def _take_over(previous: dict | None, stem: str, say: Callable[[str], None]) -> None:
    """A record under a free OS lock: its run ended without removing it (killed, crashed)."""
    if not previous:
        return
    pid = previous.get("pid")
    dead = previous.get("host") == socket.gethostname() and not (isinstance(pid, int) and pid_alive(pid))
    state = "dead" if dead else "gone"
    say(f"note: took over the stale lock of {stem} (pid {previous.get('pid', '?')} on "
        f"{previous.get('host', '?')} since {previous.get('since', '?')}, {state})")
