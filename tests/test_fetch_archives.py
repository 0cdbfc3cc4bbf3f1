"""Archive extraction: path traversal and link escapes rejected, split archives joined, resume-safe."""

from __future__ import annotations

import io
import os
import random
import tarfile
import zipfile
from pathlib import Path

import py7zr
import pytest

from repro.errors import FetchError
from repro.fetch.archives import (
    MARKER_NAME,
    CorruptArchiveError,
    JoinedParts,
    UnsafeArchiveError,
    extract_archive,
    extract_to,
    split_parts,
    temp_folder_for,
)


def _tar(path: Path, members: list[tuple[str, str, bytes | str]]) -> Path:
    """members: (kind, name, payload) with kind 'file' (bytes), 'sym' / 'hard' (link target)."""
    with tarfile.open(path, "w:gz") as tar:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = payload
                tar.addfile(info)
    return path


def _split(data: bytes, stem: Path, pieces: int) -> list[Path]:
    size = -(-len(data) // pieces)
    parts = []
    for i in range(pieces):
        part = stem.with_name(f"{stem.name}.{i + 1:03d}")
        part.write_bytes(data[i * size : (i + 1) * size])
        parts.append(part)
    return parts


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _payloads(seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {f"Data/sub{i % 2}/file{i}.bin": rng.randbytes(rng.randint(1, 40_000)) for i in range(6)}


# ------------------------------------------------------------------------------- joining


def test_joined_parts_read_and_seek_like_the_concatenation(tmp_path):
    rng = random.Random(0)
    chunks = [rng.randbytes(n) for n in (1000, 0, 1, 4096, 777)]
    paths = []
    for i, chunk in enumerate(chunks):
        paths.append(tmp_path / f"x.{i + 1:03d}")
        paths[-1].write_bytes(chunk)
    whole = b"".join(chunks)
    with JoinedParts(paths) as joined:
        assert joined.read() == whole
        for _ in range(200):
            start = rng.randrange(len(whole) + 5)
            length = rng.randrange(3000)
            joined.seek(start)
            assert joined.read(length) == whole[start : start + length]
        joined.seek(-10, os.SEEK_END)
        assert joined.tell() == len(whole) - 10 and joined.read() == whole[-10:]
    assert split_parts(paths[0]) == paths
    assert split_parts(tmp_path / "x.002") == paths[1:]


def test_split_zip_is_joined_and_extracted(tmp_path):
    files = _payloads(1)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    parts = _split(buffer.getvalue(), tmp_path / "VOCdevkit.zip", 3)
    out = tmp_path / "out"
    out.mkdir()
    extract_archive(split_parts(parts[0]), out)
    assert _tree(out) == files


def test_split_7z_is_joined_and_extracted(tmp_path):
    files = _payloads(2)
    source = tmp_path / "src"
    for name, data in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    with py7zr.SevenZipFile(tmp_path / "whole.7z", "w") as archive:
        archive.writeall(source / "Data", "Data")
    parts = _split((tmp_path / "whole.7z").read_bytes(), tmp_path / "CityScapes.7z", 4)
    out = tmp_path / "out"
    out.mkdir()
    extract_archive(parts, out)
    assert _tree(out) == files


def test_corrupt_part_is_reported(tmp_path):
    files = _payloads(3)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    data = bytearray(buffer.getvalue())
    data[len(data) // 3] ^= 0xFF  # flips a byte inside some member's compressed data
    parts = _split(bytes(data), tmp_path / "A.zip", 2)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FetchError):
        extract_archive(parts, out)


# ------------------------------------------------------------------------------- safety


@pytest.mark.parametrize(
    "members, reason",
    [
        ([("file", "ok.txt", b"fine"), ("file", "../escaped.txt", b"evil")], "contains '..'"),
        ([("file", "a/../../escaped.txt", b"evil")], "contains '..'"),
        ([("file", "/tmp/escaped-absolute.txt", b"evil")], "absolute path"),
        ([("sym", "link", "../../outside")], "points outside"),
        ([("sym", "link", "/etc")], "points outside"),
        ([("sym", "inner", "sub"), ("file", "inner/x.txt", b"x")], "goes through the link"),
        ([("sym", "a", "b/.."), ("sym", "b", "."), ("file", "a/escaped.txt", b"evil")], "goes through the link"),
        ([("hard", "hl", "../outside.txt")], "points outside"),
    ],
)
def test_tar_traversal_and_escaping_links_are_rejected(tmp_path, members, reason):
    archive = _tar(tmp_path / "evil.tar.gz", members)
    dest = tmp_path / "deep" / "dest"
    dest.mkdir(parents=True)
    with pytest.raises(UnsafeArchiveError, match=reason):
        extract_archive([archive], dest)
    assert not (tmp_path / "deep" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/escaped-absolute.txt").exists()


def test_tar_with_a_link_inside_the_tree_is_accepted(tmp_path):
    archive = _tar(
        tmp_path / "ok.tar.gz",
        [("file", "data/real.txt", b"payload"), ("sym", "data/alias.txt", "real.txt")],
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_archive([archive], dest)
    assert (dest / "data" / "alias.txt").is_symlink()
    assert (dest / "data" / "alias.txt").read_bytes() == b"payload"


def test_zip_traversal_is_rejected_before_anything_is_written(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("good.txt", b"fine")
        archive.writestr("../escaped.txt", b"evil")
    (tmp_path / "evil.zip").write_bytes(buffer.getvalue())
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError, match="contains '..'"):
        extract_archive([tmp_path / "evil.zip"], dest)
    assert list(dest.iterdir()) == [] and not (tmp_path / "escaped.txt").exists()


def test_zip_symlink_member_is_rejected(tmp_path):
    info = zipfile.ZipInfo("link")
    info.external_attr = (0o120777 << 16)  # S_IFLNK
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as archive:
        archive.writestr(info, "../../outside")
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError, match="symlink"):
        extract_archive([tmp_path / "link.zip"], dest)


# ------------------------------------------------------------------------- extract_to


def _dataset_tar(tmp_path: Path) -> Path:
    return _tar(
        tmp_path / "DS.tar.gz",
        [("file", "DS/images/a.jpg", b"jpeg"), ("file", "DS/labels/a.png", b"png")],
    )


def test_extract_to_replaces_a_crashed_temp_folder_and_marks_completion(tmp_path):
    archive = _dataset_tar(tmp_path)
    final = tmp_path / "data" / "DS"
    temp = temp_folder_for(final)
    (temp / "DS" / "images").mkdir(parents=True)
    (temp / "DS" / "images" / "half-written.jpg").write_bytes(b"jp")  # left by a crash

    assert extract_to([[archive]], final, locate=lambda t: t / "DS") is True
    assert _tree(final) == {"images/a.jpg": b"jpeg", "labels/a.png": b"png", MARKER_NAME: (final / MARKER_NAME).read_bytes()}
    assert not temp.exists()
    # A finished extraction is not redone (the archive is not even opened again).
    archive.unlink()
    assert extract_to([[archive]], final, locate=lambda t: t / "DS") is False


def test_failed_extraction_leaves_neither_temp_nor_destination(tmp_path):
    archive = _tar(tmp_path / "bad.tar.gz", [("file", "DS/a.jpg", b"x"), ("file", "../evil", b"y")])
    final = tmp_path / "data" / "DS"
    with pytest.raises(UnsafeArchiveError):
        extract_to([[archive]], final)
    assert not final.exists() and not temp_folder_for(final).exists()
    assert not (tmp_path / "data" / "evil").exists()


def test_truncated_tar_is_reported_and_cleaned_up(tmp_path):
    archive = _dataset_tar(tmp_path)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    final = tmp_path / "data" / "DS"
    with pytest.raises(FetchError):
        extract_to([[archive]], final)
    assert not final.exists() and not temp_folder_for(final).exists()


def test_corrupt_gzip_is_detected_by_its_checksum(tmp_path):
    payload = random.Random(4).randbytes(150_000)  # incompressible: deflate stores it verbatim
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("DS/a.bin")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    data = bytearray(buffer.getvalue())
    data[len(data) // 2] ^= 0xFF  # only the gzip CRC can notice this
    (tmp_path / "DS.tar.gz").write_bytes(bytes(data))
    final = tmp_path / "data" / "DS"
    with pytest.raises(CorruptArchiveError, match="CRC"):
        extract_to([[tmp_path / "DS.tar.gz"]], final)
    assert not final.exists() and not temp_folder_for(final).exists()
