"""Datasets: where each one comes from, how to get it onto disk, and the manual steps.

Sources, tried in order (facts from upstream's scripts/prepare_datasets.sh and docs):
  * upstream's packaged archives on the GitHub release `ssseg_datasets` of
    SegmentationBLWX/modelstore (public, no login; they carry upstream's id lists);
  * official archives where they are public (ADE20k challenge zip, COCO-Stuff-10k v1.1 zip,
    PASCAL VOC 2012 trainval tar);
  * manual steps where a login or a request is needed (Cityscapes official, LIP, VSPW,
    PASCAL-Context): `repro fetch --dataset NAME --manual` prints them, and the files are then
    accepted with `--from`.
Archives are downloaded into `<data root>/.downloads/`, unpacked next to the destination, moved
into place (`<data root>/<DATASET_FOLDERS[name]>`), checked with `repro.datasets.check_dataset`,
and deleted unless `keep_archives`. An already unpacked folder given with `--from` is checked the
same way and registered at that place as a symbolic link (no copy).
"""

from __future__ import annotations

import difflib
import os
import shutil
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
from repro.paths import (
    DATASET_FOLDERS,
    DATASET_MARKERS,
    data_root,
    dataset_place,
    looks_like_dataset,
    resolve_dataset_root,
)

UPSTREAM_RELEASE = "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_datasets/"


def _upstream(name: str, parts: int | None = None) -> tuple[str, ...]:
    if parts is None:
        return (UPSTREAM_RELEASE + name,)
    return tuple(f"{UPSTREAM_RELEASE}{name}.{i:03d}" for i in range(1, parts + 1))


@dataclass(frozen=True)
class Archive:
    """One archive: its parts in order (URLs, or bare file names when it cannot be downloaded)."""

    parts: tuple[str, ...]
    sha256: tuple[str | None, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(file_name_from_url(p) for p in self.parts)

    def digest(self, index: int) -> str | None:
        return self.sha256[index] if index < len(self.sha256) else None


@dataclass(frozen=True)
class Source:
    key: str  # 'upstream' | 'official'
    description: str
    archives: tuple[Archive, ...]
    downloadable: bool = True  # False: behind a login; the files come in with --from


@dataclass(frozen=True)
class DatasetSources:
    name: str
    title: str
    sources: tuple[Source, ...]
    manual: str

    @property
    def folder(self) -> str:
        return DATASET_FOLDERS[self.name]

    @property
    def markers(self) -> tuple[tuple[str, ...], ...]:
        """Path sets a folder of this dataset holds (how it is found in an unpacked archive)."""
        return DATASET_MARKERS[self.name]


_FROM = "repro fetch --dataset {name} --from FILE [--from FILE ...]"

DATASET_SOURCES: dict[str, DatasetSources] = {
    "ade20k": DatasetSources(
        name="ade20k",
        title="ADE20k",
        sources=(
            Source("upstream", "upstream's packaged ADE20k.tar.gz", (Archive(_upstream("ADE20k.tar.gz")),)),
            Source(
                "official",
                "the official SceneParsing challenge zip (MIT)",
                (Archive(("http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",)),),
            ),
        ),
        manual=(
            "ADE20k (SceneParsing-150, val = 2000 images) is public; either file works:\n"
            f"  {UPSTREAM_RELEASE}ADE20k.tar.gz (upstream's package, with id lists)\n"
            "  http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip (official)\n"
            f"then: {_FROM.format(name='ade20k')}"
        ),
    ),
    "cityscapes": DatasetSources(
        name="cityscapes",
        title="Cityscapes",
        sources=(
            Source(
                "upstream",
                "upstream's packaged CityScapes.7z.001-011 (no login needed)",
                (Archive(_upstream("CityScapes.7z", 11)),),
            ),
            Source(
                "official",
                "the official zips (free account at cityscapes-dataset.com)",
                (Archive(("gtFine_trainvaltest.zip",)), Archive(("leftImg8bit_trainvaltest.zip",))),
                downloadable=False,
            ),
        ),
        manual=(
            "Cityscapes official files need a (free) account:\n"
            "  1. log in at https://www.cityscapes-dataset.com/downloads/\n"
            "  2. download gtFine_trainvaltest.zip (241 MB) and leftImg8bit_trainvaltest.zip (11 GB)\n"
            "  3. repro fetch --dataset cityscapes --from gtFine_trainvaltest.zip "
            "--from leftImg8bit_trainvaltest.zip   (or --from the folder holding both)\n"
            "Without an account, `repro fetch --dataset cityscapes` downloads upstream's packaged copy "
            f"({UPSTREAM_RELEASE}CityScapes.7z.001 ... .011).\n"
            "Rows evaluated on the test split are scored by the Cityscapes server: `repro eval` writes "
            "the submission, you upload it."
        ),
    ),
    "cocostuff10k": DatasetSources(
        name="cocostuff10k",
        title="COCO-Stuff-10k",
        sources=(
            Source(
                "upstream",
                "upstream's packaged COCOStuff10k.tar.gz",
                (Archive(_upstream("COCOStuff10k.tar.gz")),),
            ),
            Source(
                "official",
                "the official cocostuff-10k-v1.1.zip",
                (
                    Archive(
                        (
                            "http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/"
                            "cocostuff-10k-v1.1.zip",
                        )
                    ),
                ),
            ),
        ),
        manual=(
            "COCO-Stuff-10k (test = 1000 images) is public; either file works:\n"
            f"  {UPSTREAM_RELEASE}COCOStuff10k.tar.gz\n"
            "  http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/cocostuff-10k-v1.1.zip\n"
            f"then: {_FROM.format(name='cocostuff10k')}"
        ),
    ),
    "lip": DatasetSources(
        name="lip",
        title="LIP",
        sources=(
            Source("upstream", "upstream's packaged LIP.tar.gz", (Archive(_upstream("LIP.tar.gz")),)),
            Source(
                "official",
                "the official TrainVal zips (Google Drive / Baidu via sysu-hcp.net)",
                (Archive(("TrainVal_images.zip",)), Archive(("TrainVal_parsing_annotations.zip",))),
                downloadable=False,
            ),
        ),
        manual=(
            "LIP official files are on Google Drive / Baidu (links at http://sysu-hcp.net/lip/):\n"
            "  download TrainVal_images.zip and TrainVal_parsing_annotations.zip, then\n"
            "  repro fetch --dataset lip --from TrainVal_images.zip --from TrainVal_parsing_annotations.zip\n"
            f"Or let repro download upstream's package: {UPSTREAM_RELEASE}LIP.tar.gz"
        ),
    ),
    "voc": DatasetSources(
        name="voc",
        title="PASCAL VOC 2012",
        sources=(
            Source(
                "upstream",
                "upstream's packaged VOCdevkit.zip.001-003",
                (Archive(_upstream("VOCdevkit.zip", 3)),),
            ),
            Source(
                "official",
                "the official VOC2012 trainval tar (val labels as palette PNGs)",
                (Archive(("http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",)),),
            ),
        ),
        manual=(
            "PASCAL VOC 2012 (val = 1449 images) is public; either works:\n"
            f"  {UPSTREAM_RELEASE}VOCdevkit.zip.001, .002, .003 (all three parts)\n"
            "  http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar (official)\n"
            f"then: {_FROM.format(name='voc')}"
        ),
    ),
    "pascalcontext59": DatasetSources(
        name="pascalcontext59",
        title="PASCAL-Context-59",
        sources=(
            Source(
                "upstream",
                "upstream's packaged PascalContext.tar.gz",
                (Archive(_upstream("PascalContext.tar.gz")),),
            ),
        ),
        manual=(
            "PASCAL-Context-59 is built from two public files plus a conversion:\n"
            "  http://host.robots.ox.ac.uk/pascal/VOC/voc2010/VOCtrainval_03-May-2010.tar (images) and\n"
            "  https://codalabuser.blob.core.windows.net/public/trainval_merged.json (labels),\n"
            "  converted to VOCdevkit/VOC2010/SegmentationClassContext/*.png (0 = background, 1..59) with\n"
            "  the Detail API (e.g. mmsegmentation's tools/dataset_converters/pascal_context.py), and\n"
            "  ImageSets/SegmentationContext/val.txt.\n"
            f"Easier: upstream's package {UPSTREAM_RELEASE}PascalContext.tar.gz "
            "(`repro fetch --dataset pascalcontext59`)."
        ),
    ),
    "vspw": DatasetSources(
        name="vspw",
        title="VSPW",
        sources=(
            Source(
                "upstream",
                "upstream's packaged VSPW_480p.zip.001-010",
                (Archive(_upstream("VSPW_480p.zip", 10)),),
            ),
        ),
        manual=(
            "VSPW official data is given on request (https://www.vspwdataset.com/); take VSPW_480p and\n"
            f"  {_FROM.format(name='vspw')}   (the archive must unpack to data/ and val.txt)\n"
            f"Or upstream's package: {UPSTREAM_RELEASE}VSPW_480p.zip.001 ... .010"
        ),
    ),
}

_ALIASES = {
    "ade": "ade20k",
    "ade20k": "ade20k",
    "adechallengedata2016": "ade20k",
    "cityscapes": "cityscapes",
    "cocostuff10k": "cocostuff10k",
    "cocostuff": "cocostuff10k",
    "coco-stuff-10k": "cocostuff10k",
    "lip": "lip",
    "voc": "voc",
    "pascalvoc": "voc",
    "voc2012": "voc",
    "vocaug": "voc",
    "pascalcontext59": "pascalcontext59",
    "pascalcontext": "pascalcontext59",
    "pascal-context": "pascalcontext59",
    "pc59": "pascalcontext59",
    "vspw": "vspw",
    "vspw_480p": "vspw",
}


def dataset_sources(name: str) -> DatasetSources:
    """The sources of a dataset by name (case-insensitive; a few common spellings accepted)."""
    key = _ALIASES.get(name.strip().lower().replace(" ", ""))
    if key is None:
        close = difflib.get_close_matches(name.lower(), list(DATASET_SOURCES), n=2, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise DatasetError(
            f"unknown dataset '{name}'{hint} (known: {', '.join(DATASET_SOURCES)})", exit_code=2
        )
    return DATASET_SOURCES[key]


def manual_steps(name: str) -> str:
    spec = dataset_sources(name)
    return f"{spec.title} → {dataset_place(spec.name)}\n{spec.manual}"


# ------------------------------------------------------------------------------ internals


def _layout_problems(name: str, folder: Path, allow_subset: bool = False):
    """Problems `repro.datasets.check_dataset` finds in `folder` (empty when it is usable): its
    CheckResult, a list that also has the split counts (`subsets.state_text`)."""
    from repro.datasets import check_dataset  # noqa: PLC0415 - datasets sits below fetch

    return check_dataset(name, folder, allow_subset=allow_subset)


def _has_markers(folder: Path, spec: DatasetSources) -> bool:
    return looks_like_dataset(spec.name, folder)


def _locator(spec: DatasetSources):
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


def _local_archives(spec: DatasetSources, given: list[Path]) -> tuple[str, list[list[Path]]]:
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
        needed = [name for archive in source.archives for name in archive.names]
        present = [name for name in needed if name in by_name]
        if present and len(present) < len(needed):
            missing = [name for name in needed if name not in by_name]
            raise FetchError(
                f"{spec.title} ({source.description}) needs {', '.join(needed)}; "
                f"missing: {', '.join(missing)}"
            )
        if present:
            return source.key, [[by_name[n] for n in archive.names] for archive in source.archives]

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
    spec: DatasetSources, source: Source, downloads: Path, *, mirror: str | None, progress: bool
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
    """Make dataset `name` ready (found as `repro.paths.resolve_dataset_root` finds it, or put
    at `root`); return its folder.

    `sources`: local archives or folders holding them (`--from`), used instead of downloading;
    an already unpacked dataset folder is checked and registered as a symbolic link (no copy).
    `prefer`: 'upstream' or 'official' to try that source first. `force` replaces a folder at
    the dataset's place (never one found elsewhere). The result is checked with
    `repro.datasets.check_dataset` (`allow_subset`: fewer images accepted); problems raise.
    """
    spec = dataset_sources(name)
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


def _ready(spec: DatasetSources, dest: Path, place: Path, *, force: bool, allow_subset: bool) -> bool:
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


def _unpack(spec: DatasetSources, archives, dest: Path, source_key: str, downloaded: list[Path]) -> None:
    try:
        extract_to(archives, dest, locate=_locator(spec), info={"dataset": spec.name, "source": source_key})
    except CorruptArchiveError as err:
        if not downloaded:
            raise FetchError(f"{err}; get a fresh copy of the file") from None
        for path in downloaded:  # complete by size but damaged: the next run downloads anew
            path.unlink(missing_ok=True)
        raise FetchError(f"{err}; the downloaded archives were deleted, run the command again") from None


def _check_unpacked(spec: DatasetSources, dest: Path, downloaded: list[Path], allow_subset: bool) -> None:
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


def _unpacked_folder(spec: DatasetSources, sources: list[str | os.PathLike] | None) -> Path | None:
    """The one `--from` folder when it is an unpacked dataset (not a folder of archives)."""
    if not sources or len(sources) != 1:
        return None
    folder = Path(sources[0]).expanduser()
    return folder if folder.is_dir() and looks_like_dataset(spec.name, folder) else None


def register_folder(spec: DatasetSources, folder: Path, dest: Path, *, force: bool, allow_subset: bool) -> Path:
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


def _ordered_sources(spec: DatasetSources, prefer: str | None) -> list[Source]:
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
    "Archive",
    "DATASET_SOURCES",
    "DatasetSources",
    "Source",
    "dataset_sources",
    "fetch_dataset",
    "manual_steps",
]
