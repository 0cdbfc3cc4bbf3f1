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

from repro.lazy import lazy_exports

# Loaded on first use (PEP 562): `repro status` and the plan read the cache through here
# without importing the HTTP client and the archive readers.
_HOMES = {
    "archives": ("JoinedParts", "UnsafeArchiveError", "extract_archive", "extract_to"),
    "checkpoints": ("checkpoint_class_count", "fetch_checkpoint", "pin_manifest"),
    "cache": ("LOCK_FILE_NAME", "checkpoint_path", "lock_file_path", "read_lock_file", "resolve_checkpoint"),
    "datasets": ("fetch_dataset", "manual_steps"),
    "download": ("mirror_url",),
}
__getattr__, __all__ = lazy_exports(__name__, _HOMES)
