"""Downloads (resumable, verified, cached) of checkpoints and datasets, and safe extraction.

Public API:
    fetch_checkpoint(model_id, *, force=False, source=None, mirror=None, progress=True,
                     link=False) -> Path           (link: a local file verified, then linked)
    checkpoint_path(model_id) -> Path | None          (cached, verified file; no download)
    fetch_dataset(name, *, root=None, data_root_override=None, overrides=None, force=False,
                  sources=None, prefer=None, mirror=None, progress=True, keep_archives=False,
                  allow_subset=False, link=False) -> Path
                  (sources=[an unpacked dataset folder]: checked, then registered as a link)
    dataset_sources(name) / DATASET_SOURCES / manual_steps(name)
    pin_manifest(out, manifest_path=None) -> {id: sha256}
    extract_archive(parts, dest) / JoinedParts    (safe extraction, split archives)
    mirror_url(url, mirror=None)
"""

from __future__ import annotations

from repro.fetch.archives import JoinedParts, UnsafeArchiveError, extract_archive, extract_to
from repro.fetch.checkpoints import (
    DATASET_BY_CLASS_COUNT,
    LOCK_FILE_NAME,
    checkpoint_class_count,
    checkpoint_path,
    fetch_checkpoint,
    lock_file_path,
    pin_manifest,
    read_lock_file,
    resolve_checkpoint,
)
from repro.fetch.datasets import DATASET_SOURCES, dataset_sources, fetch_dataset, manual_steps
from repro.fetch.download import mirror_url

__all__ = [
    "DATASET_BY_CLASS_COUNT",
    "DATASET_SOURCES",
    "JoinedParts",
    "LOCK_FILE_NAME",
    "UnsafeArchiveError",
    "checkpoint_class_count",
    "checkpoint_path",
    "dataset_sources",
    "extract_archive",
    "extract_to",
    "fetch_checkpoint",
    "fetch_dataset",
    "lock_file_path",
    "manual_steps",
    "mirror_url",
    "pin_manifest",
    "read_lock_file",
    "resolve_checkpoint",
]
