"""The checkpoint cache as the other commands read it, light to import (no HTTP client, no
torch): the lock file of accepted digests, the one check of a cached file (`checkpoint_status`:
cached, damaged, interrupted, ... with the command that fixes it; `repro status` shows it), and
the one resolver of the file to load (`resolve_checkpoint`, for the engine, the plan and the CLI,
which names a damaged file as status does). Downloading and importing are in
`repro.fetch.checkpoints`.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from repro.errors import CheckpointError, FetchError, ReproError
from repro.fileio import file_sha256
from repro.paths import cache_home, checkpoint_dir
from repro.text import short_digest

LOCK_FILE_NAME = "checkpoints.lock.json"
ZIP_MAGIC, PICKLE_PROTO = b"PK\x03\x04", b"\x80"  # torch.save's two formats (zip, legacy pickle)


def lock_file_path() -> Path:
    return cache_home() / LOCK_FILE_NAME


def read_lock_file() -> dict[str, dict]:
    path = lock_file_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise FetchError(f"{path} is not valid JSON; fix or delete it (digests will be re-recorded)") from None
    if not isinstance(data, dict):
        raise FetchError(f"{path} does not hold a JSON object; fix or delete it")
    return data


def _manifest_entry(model_id: str):
    from repro.manifest import load_manifest

    return load_manifest().get(model_id)


# Checkpoint states: one rule for `repro status`, `repro eval` (resolve_checkpoint) and fetch.
CKPT_MISSING = "missing"  # nothing in the cache
CKPT_PART = "interrupted"  # an interrupted download (.part) waits to be resumed
CKPT_UNRECORDED = "unrecorded"  # a file without a lock record: not verified
CKPT_CACHED = "cached"  # size matches the record made when fetch verified the sha256
CKPT_VERIFIED = "verified"  # re-hashed now (--verify): sha256 matches
CKPT_BAD = "mismatch"  # size or sha256 differs from the record or the manifest: a damaged file
USABLE = (CKPT_CACHED, CKPT_VERIFIED)


@dataclass
class CheckpointStatus:
    state: str
    detail: str  # one line for a person: what is wrong and the command that fixes it
    path: str | None = None
    sha256: str | None = None  # the recorded (or, with verify, re-hashed) digest
    size: int | None = None
    verified_against: str | None = None  # "manifest" | "lock file": what the digest was checked with



def _unfetched_state(model_id: str, folder: Path) -> CheckpointStatus:
    """No (usable) lock record: an interrupted download, an unverified file, or nothing."""
    files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    parts = [p for p in files if p.name.endswith(".part")]
    others = [p for p in files if not p.name.endswith((".part", ".lock"))]
    if others:
        return CheckpointStatus(
            CKPT_UNRECORDED, f"{others[0].name} is not verified: run `repro fetch {model_id}` to check it",
            path=str(others[0]), size=others[0].stat().st_size,
        )
    if parts:
        return CheckpointStatus(
            CKPT_PART, f"interrupted download: run `repro fetch {model_id}` to resume", path=str(parts[0]),
            size=parts[0].stat().st_size,
        )
    return CheckpointStatus(CKPT_MISSING, f"not fetched: repro fetch {model_id}")


def checkpoint_status(entry, *, verify: bool = False, lock: dict | None = None) -> CheckpointStatus:
    """Is the checkpoint of a row in the cache, and is it the file fetch verified?

    Without `verify` the sha256 is not recomputed (a multi-GB file would take minutes): the
    file must have the size and digest recorded when fetch accepted it after checking its
    sha256, and that digest must be the manifest's when it has one.
    """
    record = (lock if lock is not None else read_lock_file()).get(entry.id) or {}
    folder = checkpoint_dir(entry.id)
    path = folder / record["file"] if record.get("file") else None
    if path is not None and path.is_symlink() and not path.exists():  # fetch --from FILE --link
        return CheckpointStatus(
            CKPT_BAD, f"{path.name} links to {os.readlink(path)}, which is gone: repro fetch {entry.id} --from FILE",
            path=str(path),
        )
    if path is None or not path.is_file():
        return _unfetched_state(entry.id, folder)
    size = path.stat().st_size
    against = "manifest" if entry.sha256 else "lock file"
    found = CheckpointStatus(CKPT_CACHED, "", str(path), record.get("sha256"), size, against)
    refetch = f"run `repro fetch {entry.id} --force`"
    if record.get("size") is not None and size != record["size"]:
        found.state, found.detail = CKPT_BAD, f"{size} bytes, {record['size']} when verified: {refetch}"
    elif entry.sha256 and record.get("sha256") != entry.sha256:
        found.state = CKPT_BAD
        found.detail = f"sha256 {short_digest(record.get('sha256'), '?')} is not the manifest's {short_digest(entry.sha256, '?')}: {refetch}"
    elif verify:
        _rehash(found, expected=entry.sha256 or record.get("sha256"), refetch=refetch)
    else:
        found.detail = "cached (verified at fetch)"
    return found


def _rehash(found: CheckpointStatus, *, expected: str | None, refetch: str) -> None:
    digest = file_sha256(found.path)
    found.sha256 = digest
    if expected and digest != expected:
        found.state = CKPT_BAD
        found.detail = f"sha256 {short_digest(digest, '?')} is not the verified {short_digest(expected, '?')}: {refetch}"
    else:
        found.state, found.detail = CKPT_VERIFIED, f"verified now (sha256 matches the {found.verified_against})"


def verified_file(entry, *, rehash: bool = False) -> Path | None:
    """The cached file of `entry` when `checkpoint_status` finds it usable, else None."""
    found = checkpoint_status(entry, verify=rehash)
    return Path(found.path) if found.state in USABLE else None


def checkpoint_path(model_id: str) -> Path | None:
    """The cached, verified checkpoint of a model id or alias, or None when not fetched yet (or
    damaged). Cheap (no re-hash): see `checkpoint_status`."""
    return verified_file(_manifest_entry(model_id))


def resolve_checkpoint(model_id: str, checkpoint: str | os.PathLike | None) -> Path:
    """The checkpoint file to load: an explicit path, else the cached download. A cached file
    that is not usable is named as `repro status` names it, with the same fix."""
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if path.is_dir():
            raise CheckpointError(f"checkpoint {path} is a folder; pass the .pth file inside it")
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
        _check_container(path)
        return path
    try:
        found = checkpoint_status(_manifest_entry(model_id))
    except ReproError:  # an unreadable lock file: as if nothing were cached
        found = CheckpointStatus(CKPT_MISSING, "")
    if found.state in USABLE:
        return Path(found.path)
    if found.state == CKPT_BAD:
        raise CheckpointError(f"the cached checkpoint of {model_id} is damaged: {found.detail}")
    if found.state != CKPT_MISSING:
        raise CheckpointError(f"no verified checkpoint for {model_id}: {found.detail} (or pass --checkpoint PATH)")
    raise CheckpointError(f"no cached checkpoint for {model_id}; run `repro fetch {model_id}` or pass --checkpoint PATH")


def checkpoint_head(path: Path) -> bytes:
    """The first bytes of a checkpoint file, checked to be one of torch.save's two formats (a zip
    archive, the current one, or a legacy pickle); one-line CheckpointError otherwise."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from None
    if not (head.startswith(ZIP_MAGIC) or head[:1] == PICKLE_PROTO):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (it starts with {head!r}); download it again")
    return head


def _check_container(path: Path) -> None:
    """What can be told of a checkpoint file without torch (the plan runs before torch loads):
    a torch.save file starts as a zip archive or a pickle, and a zip's directory is at its end,
    so a truncated download shows. The weights themselves are the engine's check."""
    if checkpoint_head(path).startswith(ZIP_MAGIC):
        try:
            zipfile.ZipFile(path).close()
        except (zipfile.BadZipFile, OSError):
            raise CheckpointError(f"{path} is truncated or corrupt (its zip directory is missing); download it again") from None
