"""Datasets: where each one comes from, how to get it onto disk, and the manual steps.

Each dataset's sources, tried in order, are facts of its `DatasetSpec` (`sources`, `manual`;
from upstream's scripts/prepare_datasets.sh and docs): upstream's packaged archives on the GitHub
release `ssseg_datasets` of SegmentationBLWX/modelstore (public, no login; they carry upstream's
id lists); official archives where they are public; manual steps where a login or a request is
needed, printed by `repro fetch --dataset NAME --manual`, after which the files are accepted with
`--from`.
Archives are downloaded into `<data root>/.downloads/`, unpacked next to the destination, moved
into place (`<data root>/<DatasetSpec.folder>`), checked with `repro.datasets.check_dataset`,
and deleted unless `keep_archives`. An already unpacked folder given with `--from` is checked the
same way and registered at that place as a symbolic link (no copy).
"""

from __future__ import annotations

import os
import shutil
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from repro.datasets.base import DatasetSpec
from repro.datasets.registry import find_dataset
from repro.datasets.roots import dataset_place, looks_like_dataset, resolve_dataset_root
from repro.datasets.sources import Archive, Source
from repro.errors import DatasetError, FetchError
from repro.fetch import subsets
from repro.fetch.archives import (
    CorruptArchiveError,
    archive_kind,
    extract_to,
    is_extracted,
    split_parts,
    temp_folder_for,
)
from repro.fetch.download import (
    AllUrlsFailed,
    DiskSpaceError,
    DownloadFailed,
    UrlFailed,
    describe_hosts,
    download_first_working,
    exclusive,
    file_name_from_url,
    make_progress,
    mirror_url,
    quiet,
    say,
)
from repro.paths import data_root


def _archive_names(archive: Archive) -> tuple[str, ...]:
    """The file names of an archive's parts."""
    return tuple(file_name_from_url(p) for p in archive.parts)


def manual_steps(name: str) -> str:
    spec = find_dataset(name, aliases=True)
    return f"{spec.title} → {dataset_place(spec.name)}\n{spec.manual}"


# ------------------------------------------------------------------------------ internals


def _layout_problems(name: str, folder: Path, allow_subset: bool = False):
    """Problems `repro.datasets.check_dataset` finds in `folder` (empty when it is usable): its
    CheckResult, a list that also has the split counts (`subsets.state_text`)."""
    from repro.datasets import check_dataset  # noqa: PLC0415 - datasets sits below fetch

    return check_dataset(name, folder, allow_subset=allow_subset)


def _has_markers(folder: Path, spec: DatasetSpec) -> bool:
    return looks_like_dataset(spec.name, folder)


def _locator(spec: DatasetSpec):
    def locate(temp: Path) -> Path:
        # The expected path first (archives unpack to e.g. VOCdevkit/VOC2012), then its last
        # component, then the top, then any folder a few levels down (an extra wrapper folder).
        preferred = [temp / spec.folder, temp / Path(spec.folder).name, temp]
        for candidate in preferred:
            if candidate.is_dir() and _has_markers(candidate, spec):
                return candidate
        queue: deque[tuple[Path, int]] = deque([(temp, 0)])
        while queue:
            folder, depth = queue.popleft()
            if _has_markers(folder, spec):
                return folder
            if depth < 3:
                try:
                    children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
                except OSError:
                    continue
                if len(children) <= 64:  # do not walk into image folders
                    queue.extend((child, depth + 1) for child in children)
        wanted = " and ".join(spec.markers[0])
        raise FetchError(
            f"the archive does not contain a {spec.title} folder (looked for {wanted}); "
            f"is it the right file? see `repro fetch --dataset {spec.name} --manual`"
        )

    return locate


def _downloads_folder(root: str | os.PathLike | None, data_root_override) -> Path:
    if root:
        return Path(root).expanduser().parent / ".downloads"
    return data_root(data_root_override) / ".downloads"


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _local_archives(spec: DatasetSpec, given: list[Path]) -> tuple[str, list[list[Path]]]:
    """Match user-supplied files (or folders holding them) to a source; else take them as-is."""
    files: list[Path] = []
    for path in given:
        path = path.expanduser()
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file())
        elif path.is_file():
            files.append(path)
            files += split_parts(path)[1:]  # X.7z.001 given: its sibling parts come along
        else:
            raise FetchError(f"--from {path}: no such file or folder")
    by_name: dict[str, Path] = {}
    for path in files:
        by_name.setdefault(path.name, path)

    for source in spec.sources:
        needed = [name for archive in source.archives for name in _archive_names(archive)]
        present = [name for name in needed if name in by_name]
        if present and len(present) < len(needed):
            missing = [name for name in needed if name not in by_name]
            raise FetchError(
                f"{spec.title} ({source.description}) needs {', '.join(needed)}; "
                f"missing: {', '.join(missing)}"
            )
        if present:
            return source.key, [[by_name[n] for n in _archive_names(archive)] for archive in source.archives]

    # Unknown names: every archive given (a split archive counted once, from its .001).
    archives: list[list[Path]] = []
    seen: set[Path] = set()
    for path in files:
        if path in seen:
            continue
        try:
            archive_kind(path.name)
        except FetchError:
            if any(p == path for p in given):
                raise
            continue  # an unrelated file in a folder given with --from
        parts = split_parts(path)
        if parts[0] != path:
            continue
        seen.update(parts)
        archives.append(parts)
    if not archives:
        wanted = " and ".join(spec.markers[0])
        raise FetchError(
            f"--from {', '.join(map(str, given))}: neither an unpacked {spec.title} folder (with {wanted}) "
            f"nor {spec.title} archives; see `repro fetch --dataset {spec.name} --manual`"
        )
    return "local", archives


def _download_source(
    spec: DatasetSpec, source: Source, downloads: Path, *, mirror: str | None, progress: bool
) -> list[list[Path]]:
    """Download every part of `source` into `downloads` (complete files are reused)."""
    reporter = make_progress(progress)
    archives: list[list[Path]] = []
    for archive in source.archives:
        parts: list[Path] = []
        for index, url in enumerate(archive.parts):
            name = file_name_from_url(url)
            dest = downloads / name
            expected = archive.digest(index)
            if dest.is_file():
                parts.append(dest)  # only a complete, verified download gets its final name
                continue

            def verify(result, expected=expected):
                if expected and result.sha256 != expected:
                    raise UrlFailed(f"sha256 mismatch: expected {expected[:12]}…, got {result.sha256[:12]}…")

            path, _, _ = download_first_working(
                [mirror_url(url, mirror)],
                lambda _url, dest=dest: dest,
                verify,
                what=f"{spec.title} {name}",
                progress=reporter,
            )
            parts.append(path)
        archives.append(parts)
    return archives


def fetch_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    data_root_override: str | os.PathLike | None = None,
    overrides: Mapping[str, Path] | None = None,
    force: bool = False,
    sources: list[str | os.PathLike] | None = None,
    prefer: str | None = None,
    mirror: str | None = None,
    progress: bool = True,
    keep_archives: bool = False,
    allow_subset: bool = False,
    link: bool = False,
) -> Path:
    """Make dataset `name` ready (found as `repro.datasets.roots.resolve_dataset_root` finds it, or put
    at `root`); return its folder.

    `sources`: local archives or folders holding them (`--from`), used instead of downloading;
    an already unpacked dataset folder is checked and registered as a symbolic link (no copy).
    `prefer`: 'upstream' or 'official' to try that source first. `force` replaces a folder at
    the dataset's place (never one found elsewhere). The result is checked with
    `repro.datasets.check_dataset` (`allow_subset`: fewer images accepted); problems raise.
    """
    spec = find_dataset(name, aliases=True)
    place = Path(root).expanduser() if root else dataset_place(spec.name, data_root_override, overrides)
    dest = place if root else resolve_dataset_root(spec.name, data_root_override, overrides)
    for given in sources or []:  # a typo in --from is named, not hidden behind a dataset already there
        if not Path(given).expanduser().exists():
            raise FetchError(f"--from {given}: no such file or folder")
    unpacked = _unpacked_folder(spec, sources)
    if link and unpacked is None:
        raise FetchError(f"--link needs --from with an unpacked {spec.title} folder; archives are unpacked", exit_code=2)
    with quiet(not progress), exclusive(f"dataset-{spec.name}", f"dataset {spec.title}"):
        if unpacked is not None:
            return register_folder(spec, unpacked, dest, force=force, allow_subset=allow_subset)
        if _ready(spec, dest, place, force=force, allow_subset=allow_subset):
            return dest
        downloaded: list[Path] = []
        if sources:
            source_key, archives = _local_archives(spec, [Path(s) for s in sources])
        else:
            source_key, archives, downloaded = _download_any(spec, dest, data_root_override, root, prefer, mirror, progress)
        _unpack(spec, archives, dest, source_key, downloaded)
        _check_unpacked(spec, dest, downloaded, allow_subset)
        if downloaded and not keep_archives:
            _remove_downloads(downloaded)
        say(f"{spec.title}: ready at {dest}")
        return dest


def _problem_summary(problems: list[str]) -> str:
    return problems[0] + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")


def _ready(spec: DatasetSpec, dest: Path, place: Path, *, force: bool, allow_subset: bool) -> bool:
    """True when `dest` holds the dataset complete; with `force`, remove what is at its place."""
    if not (dest.exists() or dest.is_symlink()):
        return False
    if force:
        # Only what repro put there is deleted: a link it registered, or a folder it unpacked.
        # A folder of the user's own (also one named by --dataset-root) is never removed.
        if not dest.is_symlink() and not is_extracted(dest):
            where = "" if dest == place else f", outside its place {place}"
            raise DatasetError(
                f"{spec.title} was found at {dest}{where}, which repro did not unpack; --force deletes "
                f"only what repro put there: fix or remove {dest} by hand"
            )
        say(f"{spec.title}: --force: removing {dest}")
        _remove_tree(dest)
        return False
    problems = _layout_problems(spec.name, dest, allow_subset)
    if not problems:
        say(f"{spec.title}: {subsets.state_text(problems)} ({dest})")
        subsets.remember(spec.name, dest, problems)
        return True
    if is_extracted(dest):
        state, remedy = "was unpacked by repro but", "rerun with --force to replace it"
    else:
        state, remedy = "exists but", f"fix or move {dest} by hand (--allow-subset accepts a partial copy)"
    raise DatasetError(f"{spec.title} at {dest} {state} fails the layout check: {_problem_summary(problems)}; {remedy}")


def _unpack(spec: DatasetSpec, archives, dest: Path, source_key: str, downloaded: list[Path]) -> None:
    try:
        extract_to(archives, dest, locate=_locator(spec), info={"dataset": spec.name, "source": source_key})
    except CorruptArchiveError as err:
        if not downloaded:
            raise FetchError(f"{err}; get a fresh copy of the file") from None
        for path in downloaded:  # complete by size but damaged: the next run downloads anew
            path.unlink(missing_ok=True)
        raise FetchError(f"{err}; the downloaded archives were deleted, run the command again") from None


def _check_unpacked(spec: DatasetSpec, dest: Path, downloaded: list[Path], allow_subset: bool) -> None:
    problems = _layout_problems(spec.name, dest, allow_subset)
    if problems:
        kept = f"; the archives were kept in {downloaded[0].parent}" if downloaded else ""
        raise DatasetError(f"{spec.title} unpacked to {dest} but fails the layout check: {_problem_summary(problems)}{kept}")
    subsets.remember(spec.name, dest, problems)
    if subsets.subset_counts(problems):
        say(f"{spec.title}: {subsets.state_text(problems)}")


def _remove_downloads(downloaded: list[Path]) -> None:
    for path in downloaded:
        path.unlink(missing_ok=True)
    try:
        downloaded[0].parent.rmdir()
    except OSError:
        pass


def _unpacked_folder(spec: DatasetSpec, sources: list[str | os.PathLike] | None) -> Path | None:
    """The one `--from` folder when it is an unpacked dataset (not a folder of archives)."""
    if not sources or len(sources) != 1:
        return None
    folder = Path(sources[0]).expanduser()
    return folder if folder.is_dir() and looks_like_dataset(spec.name, folder) else None


def register_folder(spec: DatasetSpec, folder: Path, dest: Path, *, force: bool, allow_subset: bool) -> Path:
    """Check an unpacked dataset folder, then make `dest` a symbolic link to it (no copy).

    Refuses to replace a real folder or file at `dest`, and a link to another folder unless `force`.
    """
    folder = folder.resolve()
    problems = _layout_problems(spec.name, folder, allow_subset)
    if problems:
        raise DatasetError(f"{spec.title} at {folder} fails the layout check: {_problem_summary(problems)}; nothing was registered")
    subsets.remember(spec.name, folder, problems)
    if dest.exists() or dest.is_symlink():
        if dest.resolve() == folder:
            say(f"{spec.title}: {folder} is already registered ({dest}); {subsets.state_text(problems)}")
            return dest
        if not dest.is_symlink():
            raise DatasetError(
                f"{dest} already exists and is not {folder}; remove it by hand, or use the folder where it "
                f"is with --dataset-root {spec.name}={folder}"
            )
        if not force:
            raise DatasetError(f"{dest} already links to {os.readlink(dest)}; pass --force to point it at {folder}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = dest.with_name(dest.name + ".link-tmp")
    temp.unlink(missing_ok=True)
    temp.symlink_to(folder, target_is_directory=True)
    os.replace(temp, dest)  # atomic: an old link stays until the new one is in place
    say(f"{spec.title}: registered {folder} as {dest} (a link, no copy); {subsets.state_text(problems)}")
    return dest


def _ordered_sources(spec: DatasetSpec, prefer: str | None) -> list[Source]:
    """The sources to download from, `prefer`'s first."""
    ordered = list(spec.sources)
    if prefer:
        if prefer not in {s.key for s in ordered}:
            raise FetchError(
                f"{spec.title} has no '{prefer}' source (it has: {', '.join(s.key for s in ordered)})"
            )
        ordered.sort(key=lambda s: s.key != prefer)
    return [s for s in ordered if s.downloadable]


def _download_any(spec, dest, data_root_override, root, prefer, mirror, progress):
    """Download the first source that works. A failed source is said once: in the line naming the
    source used, or, when every one fails, after the manual steps (one line per file to get by
    hand and the `--from` command) in the FetchError: each reason once, with the hosts it hit."""
    downloads = _downloads_folder(root, data_root_override)
    failed: list[Source] = []
    attempts, other_reasons = [], []
    for source in _ordered_sources(spec, prefer):
        # A crash may have left an unfinished extraction; extract_to removes it.
        if temp_folder_for(dest).exists():
            say(f"{spec.title}: a previous extraction was interrupted; it will be redone")
        if not failed:
            say(f"{spec.title}: fetching {source.description}")
        try:
            archives = _download_source(spec, source, downloads, mirror=mirror, progress=progress)
        except DiskSpaceError:
            raise  # another source would not fit either
        except AllUrlsFailed as err:
            failed.append(source)
            attempts += err.attempts
            continue
        except FetchError as err:
            failed.append(source)
            other_reasons.append(str(err))
            continue
        if failed:
            reasons = "; ".join(filter(None, [describe_hosts(attempts), *other_reasons]))
            say(f"{spec.title}: {', '.join(s.description for s in failed)} failed ({reasons}); "
                f"used {source.description}", always=True)
        return source.key, archives, [p for parts in archives for p in parts]
    say(spec.manual, always=True)
    reasons = "; ".join(filter(None, [describe_hosts(attempts), *other_reasons])) or "no downloadable source"
    raise DownloadFailed(f"could not download {spec.title}: {reasons}")


__all__ = [
    "fetch_dataset",
    "manual_steps",
    "register_folder",
]
