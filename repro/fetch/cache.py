"""The checkpoint cache as the other commands read it, light to import (no HTTP client, no
torch): the lock file of accepted digests, the cached file of a model, and the one resolver of
the file to load (`resolve_checkpoint`, for the engine, the plan and the CLI). Downloading and
importing are in `repro.fetch.checkpoints`.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from repro.errors import CheckpointError, FetchError, ReproError
from repro.fileio import file_sha256
from repro.paths import cache_home, checkpoint_dir

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


def _entry(model_id: str):
    from repro.manifest import load_manifest

    return load_manifest().get(model_id)


def _cached_file(entry, *, rehash: bool) -> Path | None:
    """The recorded file of `entry` if it is on disk and still matches its record."""
    record = read_lock_file().get(entry.id)
    if not record or not record.get("file"):
        return None
    path = checkpoint_dir(entry.id) / record["file"]
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if record.get("size") is not None and size != record["size"]:
        return None
    if entry.sha256 and record.get("sha256") != entry.sha256:
        return None
    if rehash:
        if file_sha256(path) != record.get("sha256"):
            return None
    return path


def checkpoint_path(model_id: str) -> Path | None:
    """The cached, verified checkpoint of a model id or alias, or None when not fetched yet.

    Cheap (no re-hash): the file must exist with the size and digest recorded when it was
    accepted, and that digest must match the manifest's sha256 when it has one.
    """
    return _cached_file(_entry(model_id), rehash=False)


def resolve_checkpoint(model_id: str, checkpoint: str | os.PathLike | None) -> Path:
    """The checkpoint file to load: an explicit path, else the cached download."""
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if path.is_dir():
            raise CheckpointError(f"checkpoint {path} is a folder; pass the .pth file inside it")
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
        _check_container(path)
        return path
    try:
        path = checkpoint_path(model_id)
    except ReproError:
        path = None
    if path is None or not Path(path).is_file():
        raise CheckpointError(f"no cached checkpoint for {model_id}; run `repro fetch {model_id}` or pass --checkpoint PATH")
    return Path(path)


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
