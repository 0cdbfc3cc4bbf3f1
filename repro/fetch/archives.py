"""Safe extraction of (possibly split) dataset archives.

* Split archives (`X.zip.001`, `X.7z.001`, ...) are byte-splits of one archive: they are read
  through `JoinedParts`, a seekable view over the parts in order, so no joined copy is written
  and nothing is held in memory.
* Every member is checked before it is written: no absolute paths, no `..`, no link whose
  target leaves the destination, no path that goes through a link, no device files. tarfile's
  `filter="data"` adds the standard library's own checks; a walk after extraction rejects any
  symlink that resolves outside. zip and 7z archives may not contain links at all (datasets
  never need them).
* `extract_to` unpacks into a temporary folder next to the destination and renames it into
  place, with a marker file: a crash leaves only the temporary folder (removed and redone on
  the next run); a finished extraction is recognised by its marker and not redone.
"""

from __future__ import annotations

import bisect
import bz2
import contextlib
import errno
import gzip
import io
import json
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from repro.errors import FetchError
from repro.fetch.download import check_disk_space, disk_full_error, human_size, say

MARKER_NAME = ".repro-extracted.json"
_SPLIT_SUFFIX = re.compile(r"\.(\d{3})$")


class UnsafeArchiveError(FetchError):
    """An archive member would be written (or point) outside the destination."""


class CorruptArchiveError(FetchError):
    """An archive is truncated or fails its checksums."""


_FILTER_ERROR = getattr(tarfile, "FilterError", ())  # Python >= 3.12 and the 3.10/3.11 backports


# ------------------------------------------------------------------------------ multi-part


class JoinedParts(io.RawIOBase):
    """Read-only, seekable byte stream over files concatenated in order (split archives)."""

    def __init__(self, parts: Sequence[os.PathLike | str]):
        super().__init__()
        if not parts:
            raise ValueError("no parts to join")
        self._paths = [Path(p) for p in parts]
        self._sizes = [p.stat().st_size for p in self._paths]
        self._starts: list[int] = []
        position = 0
        for size in self._sizes:
            self._starts.append(position)
            position += size
        self._length = position
        self._pos = 0
        self._open_index: int | None = None
        self._handle: io.BufferedReader | None = None
        self.name = str(self._paths[0])

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self._length + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if target < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self._pos = target
        return self._pos

    def _part_handle(self, index: int) -> io.BufferedReader:
        if self._open_index != index:
            if self._handle is not None:
                self._handle.close()
            self._handle = open(self._paths[index], "rb")
            self._open_index = index
        assert self._handle is not None
        return self._handle

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        written = 0
        while written < len(view) and self._pos < self._length:
            index = bisect.bisect_right(self._starts, self._pos) - 1
            within = self._pos - self._starts[index]
            take = min(len(view) - written, self._sizes[index] - within)
            if take <= 0:  # an empty part
                self._pos = self._starts[index] + self._sizes[index]
                continue
            handle = self._part_handle(index)
            handle.seek(within)
            got = handle.readinto(view[written : written + take])
            if not got:
                raise OSError(errno.EIO, f"{self._paths[index]} is shorter than when opened")
            written += got
            self._pos += got
        return written

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        super().close()


def open_joined(parts: Sequence[os.PathLike | str]) -> io.BufferedReader:
    return io.BufferedReader(JoinedParts(parts), buffer_size=1 << 20)


def split_parts(first: Path) -> list[Path]:
    """`X.001` → [X.001, X.002, ...] as far as the numbering is consecutive; else [first]."""
    match = _SPLIT_SUFFIX.search(first.name)
    if not match:
        return [first]
    stem = first.name[: match.start()]
    number = int(match.group(1))
    parts = []
    while True:
        candidate = first.with_name(f"{stem}.{number:03d}")
        if not candidate.is_file():
            break
        parts.append(candidate)
        number += 1
    return parts or [first]


def archive_kind(name: str) -> str:
    """'tar', 'zip' or '7z' from a file name (split suffixes such as `.001` ignored)."""
    base = _SPLIT_SUFFIX.sub("", name).lower()
    if base.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
        return "tar"
    if base.endswith(".zip"):
        return "zip"
    if base.endswith(".7z"):
        return "7z"
    raise FetchError(f"{name} is not an archive repro can unpack (.tar[.gz|.bz2|.xz], .zip, .7z)")


def archive_label(parts: Sequence[Path]) -> str:
    return parts[0].name if len(parts) == 1 else f"{parts[0].name} (+{len(parts) - 1} parts)"


# ---------------------------------------------------------------------------- member checks


def safe_member_path(name: str, archive: str) -> str:
    """The member's path as a clean relative posix path; rejects absolute paths and `..`."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'; refusing to extract")
    return "/".join(parts)


def _through_link(path: str, links: set[str]) -> str | None:
    """The first proper prefix of `path` that is a link member, if any."""
    pieces = path.split("/")
    for end in range(1, len(pieces)):
        prefix = "/".join(pieces[:end])
        if prefix in links:
            return prefix
    return None


def _check_tar_member(member: tarfile.TarInfo, archive: str, links: set[str]) -> None:
    path = safe_member_path(member.name, archive)
    via = _through_link(path, links)
    if via is not None:
        raise UnsafeArchiveError(
            f"{archive}: member {member.name!r} goes through the link {via!r}; refusing to extract"
        )
    if member.issym():
        target = member.linkname.replace("\\", "/")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchiveError(
                f"{archive}: symlink {member.name!r} -> {member.linkname!r} points outside the "
                "destination; refusing to extract"
            )
        if _through_link(resolved + "/x", links) is not None:
            raise UnsafeArchiveError(
                f"{archive}: symlink {member.name!r} -> {member.linkname!r} goes through another "
                "link; refusing to extract"
            )
        links.add(path)
    elif member.islnk():
        try:
            target = safe_member_path(member.linkname, archive)
        except UnsafeArchiveError:
            raise UnsafeArchiveError(
                f"{archive}: hard link {member.name!r} -> {member.linkname!r} points outside the "
                "destination; refusing to extract"
            ) from None
        if _through_link(target + "/x", links) is not None or target in links:
            raise UnsafeArchiveError(
                f"{archive}: hard link {member.name!r} -> {member.linkname!r} goes through a "
                "symlink; refusing to extract"
            )
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(
            f"{archive}: member {member.name!r} is a device, fifo or other special file; "
            "refusing to extract"
        )


def _check_links_inside(root: Path, archive: str) -> None:
    """After extraction: every symlink under `root` must resolve inside it."""
    real_root = os.path.realpath(root)
    for folder, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                target = os.path.realpath(path)
                if os.path.commonpath([real_root, target]) != real_root:
                    raise UnsafeArchiveError(
                        f"{archive}: extracted link {os.path.relpath(path, root)!r} resolves "
                        "outside the destination; refusing the archive"
                    )


# ------------------------------------------------------------------------------ extraction


def _extract_tar(parts: Sequence[Path], dest: Path, label: str) -> None:
    links: set[str] = set()
    use_filter = hasattr(tarfile, "data_filter")
    with open_joined(parts) as raw, _decompressed(raw, parts[0].name) as stream:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            _extract_tar_members(tar, dest, label, links, use_filter)
        # Read to the end so that the gzip / bz2 / xz checksum of the whole stream is verified
        # (tarfile stops at the end-of-archive blocks and its own stream reader checks nothing).
        while stream.read(1 << 20):
            pass


def _decompressed(raw, name: str):
    base = _SPLIT_SUFFIX.sub("", name).lower()
    if base.endswith((".gz", ".tgz")):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if base.endswith((".bz2", ".tbz2")):
        return bz2.BZ2File(raw, mode="rb")
    if base.endswith((".xz", ".txz")):
        return lzma.LZMAFile(raw, mode="rb")
    return contextlib.nullcontext(raw)


def _extract_tar_members(tar: tarfile.TarFile, dest: Path, label: str, links: set[str], use_filter: bool) -> None:
    for member in tar:  # streaming: each member is checked before it is written
        _check_tar_member(member, label, links)
        if not use_filter and member.issym() and ".." in member.linkname.split("/"):
            raise UnsafeArchiveError(
                f"{label}: symlink {member.name!r} uses '..' (this Python cannot verify it); "
                "refusing to extract"
            )
        try:
            if use_filter:
                tar.extract(member, dest, filter="data")
            else:  # pragma: no cover - Python < 3.10.12 / 3.11.4
                tar.extract(member, dest)
        except _FILTER_ERROR as err:
            raise UnsafeArchiveError(f"{label}: {err}; refusing to extract") from None


def _extract_zip(parts: Sequence[Path], dest: Path, label: str) -> None:
    with open_joined(parts) as stream:
        try:
            archive = zipfile.ZipFile(stream)
        except zipfile.BadZipFile as err:
            raise CorruptArchiveError(f"{label} is not a readable zip archive ({err})") from None
        with archive:
            infos = archive.infolist()
            for info in infos:  # central directory first: reject before writing anything
                safe_member_path(info.filename, label)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise UnsafeArchiveError(
                        f"{label}: member {info.filename!r} is a symlink; refusing to extract"
                    )
            for info in infos:
                try:
                    archive.extract(info, dest)
                except zipfile.BadZipFile as err:
                    raise CorruptArchiveError(f"{label} is corrupt ({err})") from None


def _extract_7z(parts: Sequence[Path], dest: Path, label: str) -> None:
    import py7zr
    from py7zr.exceptions import AbsolutePathError, ArchiveError, PasswordRequired

    with open_joined(parts) as stream:
        try:
            archive = py7zr.SevenZipFile(stream, mode="r")
        except (ArchiveError, PasswordRequired, EOFError) as err:
            raise CorruptArchiveError(f"{label} is not a readable 7z archive ({err})") from None
        with archive:
            for entry in archive.files:
                safe_member_path(entry.filename, label)
                if entry.is_symlink or entry.is_junction:
                    raise UnsafeArchiveError(
                        f"{label}: member {entry.filename!r} is a link; refusing to extract"
                    )
            try:
                archive.extractall(path=dest)
            except AbsolutePathError as err:
                raise UnsafeArchiveError(f"{label}: {err}; refusing to extract") from None
            except (ArchiveError, EOFError) as err:
                raise CorruptArchiveError(f"{label} is corrupt ({err})") from None


def uncompressed_size(parts: Sequence[Path]) -> int:
    """Bytes the archive unpacks to (zip/7z exactly; tar estimated by its compressed size)."""
    kind = archive_kind(parts[0].name)
    compressed = sum(p.stat().st_size for p in parts)
    try:
        if kind == "zip":
            with open_joined(parts) as stream, zipfile.ZipFile(stream) as archive:
                return sum(info.file_size for info in archive.infolist())
        if kind == "7z":
            import py7zr

            with open_joined(parts) as stream, py7zr.SevenZipFile(stream, mode="r") as archive:
                return int(archive.archiveinfo().uncompressed)
    except Exception:  # unreadable archives are reported by the extraction itself
        return compressed
    return compressed  # dataset images are already compressed: gz barely shrinks them


def extract_archive(parts: Sequence[Path], dest: Path) -> None:
    """Unpack one (possibly split) archive into the existing folder `dest`, safely."""
    parts = [Path(p) for p in parts]
    label = archive_label(parts)
    kind = archive_kind(parts[0].name)
    try:
        if kind == "tar":
            try:
                _extract_tar(parts, dest, label)
            except tarfile.TarError as err:
                raise CorruptArchiveError(f"{label} is not a readable tar archive ({err})") from None
        elif kind == "zip":
            _extract_zip(parts, dest, label)
        else:
            _extract_7z(parts, dest, label)
    except EOFError:
        raise CorruptArchiveError(f"{label} is truncated") from None
    except (zlib.error, lzma.LZMAError, gzip.BadGzipFile) as err:
        raise CorruptArchiveError(f"{label} is corrupt ({err})") from None
    _check_links_inside(dest, label)


def temp_folder_for(final: Path) -> Path:
    return final.parent / f".{final.name}.extracting"


def is_extracted(final: Path) -> bool:
    return (final / MARKER_NAME).is_file()


def extract_to(
    archives: Sequence[Sequence[Path]],
    final: Path,
    *,
    locate: Callable[[Path], Path] | None = None,
    prepare: Callable[[Path], None] | None = None,
    info: dict | None = None,
) -> bool:
    """Unpack `archives` (each a list of parts) so that `final` holds the result.

    `locate(tmp)` picks the folder inside the unpacked tree that becomes `final` (default: the
    whole tree); `prepare(folder)` may complete it (e.g. write id lists) before the rename.
    Returns False when `final` already holds a finished extraction (nothing is redone).
    `final` must not exist otherwise.
    """
    if is_extracted(final):
        return False
    if final.exists():
        raise FetchError(f"{final} exists but is not a finished extraction; remove it or use --force")
    temp = temp_folder_for(final)
    if temp.exists():
        say(f"removing a half-finished extraction: {temp}", always=True)
        shutil.rmtree(temp)
    needed = sum(uncompressed_size([Path(p) for p in parts]) for parts in archives)
    check_disk_space(final.parent, needed, f"unpacking into {final}")
    temp.mkdir(parents=True)
    try:
        for parts in archives:
            parts = [Path(p) for p in parts]
            started = time.monotonic()
            say(f"extracting {archive_label(parts)} ({human_size(sum(p.stat().st_size for p in parts))})")
            extract_archive(parts, temp)
            say(f"  extracted in {time.monotonic() - started:.1f} s")
        source = locate(temp) if locate else temp
        if prepare:
            prepare(source)
        record = {"archives": [[Path(p).name for p in parts] for parts in archives], **(info or {})}
        (source / MARKER_NAME).write_text(json.dumps(record, indent=2) + "\n")
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, final)
    except OSError as err:
        shutil.rmtree(temp, ignore_errors=True)
        if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise disk_full_error(final, err) from None
        if isinstance(err, FetchError):  # pragma: no cover - FetchError is not an OSError
            raise
        raise FetchError(f"cannot unpack into {final}: {err.strerror or err}") from None
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    shutil.rmtree(temp, ignore_errors=True)
    return True
