"""Downloads (resumable, verified, cached) of checkpoints and datasets, and safe extraction.

Public API:
    fetch_checkpoint(model_id, *, force=False, source=None, mirror=None, progress=True,
                     link=False) -> Path           (link: a local file verified, then linked)
    checkpoint_path(model_id) -> Path | None          (cached, verified file; no download)
    fetch_dataset(name, *, root=None, data_root_override=None, overrides=None, force=False,
                  sources=None, prefer=None, mirror=None, progress=True, keep_archives=False,
                  allow_subset=False, link=False) -> Path
                  (sources=[an unpacked dataset folder]: checked, then registered as a link)
    manual_steps(name)                            (the sources themselves: DatasetSpec.sources)
    pin_manifest(out, manifest_path=None) -> {id: sha256}
    extract_archive(parts, dest) / JoinedParts    (safe extraction, split archives)
    mirror_url(url, mirror=None)
"""

from __future__ import annotations

# Loaded on first use (PEP 562): `repro status` and the plan read the cache through here
# without importing the HTTP client and the archive readers.
_WHERE = {
    "JoinedParts": "archives", "UnsafeArchiveError": "archives", "extract_archive": "archives", "extract_to": "archives",
    "checkpoint_class_count": "checkpoints", "fetch_checkpoint": "checkpoints",
    "pin_manifest": "checkpoints",
    "LOCK_FILE_NAME": "cache", "checkpoint_path": "cache", "lock_file_path": "cache", "read_lock_file": "cache",
    "resolve_checkpoint": "cache",
    "fetch_dataset": "datasets", "manual_steps": "datasets",
    "mirror_url": "download",
}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'repro.fetch' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"repro.fetch.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "JoinedParts",
    "LOCK_FILE_NAME",
    "UnsafeArchiveError",
    "checkpoint_class_count",
    "checkpoint_path",
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
