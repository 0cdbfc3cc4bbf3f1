"""Where a dataset comes from: the archives of each source, as plain facts (no download code).

Each dataset module lists its sources in its `DatasetSpec` (upstream's packaged archives on the
GitHub release `ssseg_datasets` of SegmentationBLWX/modelstore, official archives where they are
public, files behind a login that come in with `--from`); `repro.fetch.datasets` downloads,
unpacks and checks them.
"""

from __future__ import annotations

from dataclasses import dataclass

UPSTREAM_RELEASE = "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_datasets/"
# How files downloaded by hand come in, as the manual steps write it.
FROM_COMMAND = "repro fetch --dataset {name} --from FILE [--from FILE ...]"


@dataclass(frozen=True)
class Archive:
    """One archive: its parts in order (URLs, or bare file names when it cannot be downloaded)."""

    parts: tuple[str, ...]
    sha256: tuple[str | None, ...] = ()

    def digest(self, index: int) -> str | None:
        return self.sha256[index] if index < len(self.sha256) else None


@dataclass(frozen=True)
class Source:
    key: str  # 'upstream' | 'official'
    description: str
    archives: tuple[Archive, ...]
    downloadable: bool = True  # False: behind a login; the files come in with --from


def upstream_archive(name: str, parts: int | None = None) -> Archive:
    """Upstream's packaged archive `name` on its release (split into `parts` numbered files)."""
    if parts is None:
        return Archive((UPSTREAM_RELEASE + name,))
    return Archive(tuple(f"{UPSTREAM_RELEASE}{name}.{i:03d}" for i in range(1, parts + 1)))
