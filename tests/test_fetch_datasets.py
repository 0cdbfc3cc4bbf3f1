"""Dataset fetching over a loopback server: upstream archives (single and split), official
fallback, manual imports with --from, layout check, cleanup."""

from __future__ import annotations

import dataclasses
import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from fetch_support import fetch_env, leftovers  # noqa: F401 - fetch_env is a fixture
from http_server import FileServer

import repro.fetch.datasets as fetch_datasets
from repro.datasets import DATASETS, find_dataset
from repro.datasets.sources import Archive
from repro.errors import DatasetError, FetchError
from repro.fetch import fetch_dataset
from repro.fetch.archives import MARKER_NAME

RELEASE_PATH = "/gh/SegmentationBLWX/modelstore/releases/download/ssseg_datasets/"


def _targz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _split(data: bytes, pieces: int) -> list[bytes]:
    size = -(-len(data) // pieces)
    return [data[i * size : (i + 1) * size] for i in range(pieces)]


ADE_FILES = {
    "ADEChallengeData2016/images/validation/ADE_val_00000001.jpg": b"jpeg-1",
    "ADEChallengeData2016/annotations/validation/ADE_val_00000001.png": b"png-1",
    "ADEChallengeData2016/val.txt": b"ADE_val_00000001\n",
}


@pytest.fixture
def layout_calls(monkeypatch):
    """Replace the layout check (tested for real below) by a recorder that finds no problem."""
    calls: list[tuple[str, Path]] = []

    def record(name, folder, allow_subset=False):
        calls.append((name, Path(folder)))
        return []

    monkeypatch.setattr(fetch_datasets, "_layout_problems", record)
    return calls


def test_upstream_archive_is_downloaded_unpacked_checked_and_removed(fetch_env, layout_calls):
    archive = _targz({f"ADE20k/{k}": v for k, v in ADE_FILES.items()})
    with FileServer() as server:
        server.add(RELEASE_PATH + "ADE20k.tar.gz", archive, drop_after=len(archive) // 2)
        dest = fetch_dataset("ade20k", mirror=server.url("/gh"), progress=False)
        again = fetch_dataset("ADE20k", mirror=server.url("/gh"), progress=False)
        log = server.requests_for(RELEASE_PATH + "ADE20k.tar.gz")
    data = fetch_env / "data"
    assert dest == again == data / "ADE20k"
    for name, payload in ADE_FILES.items():
        assert (dest / name).read_bytes() == payload
    assert (dest / MARKER_NAME).is_file()
    assert [r.range_start for r in log] == [None, len(archive) // 2]  # resumed, then cached
    assert layout_calls == [("ade20k", dest), ("ade20k", dest)]
    assert not (data / ".downloads").exists()  # archives deleted after a good extraction
    assert leftovers(data) == []


def test_official_source_is_tried_when_upstream_is_gone(fetch_env, layout_calls, monkeypatch):
    spec = DATASETS["ade20k"]
    with FileServer() as server:
        official_url = server.add("/places/ADEChallengeData2016.zip", _zip(ADE_FILES))
        official = dataclasses.replace(spec.sources[1], archives=(Archive((official_url,)),))
        monkeypatch.setitem(DATASETS, "ade20k", dataclasses.replace(spec, sources=(spec.sources[0], official)))
        dest = fetch_dataset("ade20k", mirror=server.url("/gh"), progress=False)
        upstream_log = server.requests_for(RELEASE_PATH + "ADE20k.tar.gz")
    assert [r.status for r in upstream_log] == [404]
    # The official zip unpacks to ADEChallengeData2016/: it becomes <data>/ADE20k/ADEChallengeData2016.
    for name, payload in ADE_FILES.items():
        assert (dest / name).read_bytes() == payload


def test_split_zip_and_shared_vocdevkit_folder(fetch_env, layout_calls):
    voc = _zip(
        {
            "VOCdevkit/VOC2012/JPEGImages/2007_000033.jpg": b"voc-jpeg",
            "VOCdevkit/VOC2012/SegmentationClass/2007_000033.png": b"voc-png",
            "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt": b"2007_000033\n",
        }
    )
    context = _targz(
        {
            "VOCdevkit/VOC2010/JPEGImages/2008_000002.jpg": b"pc-jpeg",
            "VOCdevkit/VOC2010/SegmentationClassContext/2008_000002.png": b"pc-png",
        }
    )
    with FileServer() as server:
        for i, piece in enumerate(_split(voc, 3), start=1):
            server.add(f"{RELEASE_PATH}VOCdevkit.zip.{i:03d}", piece, drop_after=10 if i == 2 else None)
        server.add(RELEASE_PATH + "PascalContext.tar.gz", context)
        pc = fetch_dataset("pascalcontext59", mirror=server.url("/gh"), progress=False)
        voc_dest = fetch_dataset("voc", mirror=server.url("/gh"), progress=False)
        second_part = server.requests_for(f"{RELEASE_PATH}VOCdevkit.zip.002")
    data = fetch_env / "data"
    assert pc == data / "VOCdevkit" / "VOC2010" and voc_dest == data / "VOCdevkit" / "VOC2012"
    assert (voc_dest / "JPEGImages" / "2007_000033.jpg").read_bytes() == b"voc-jpeg"
    assert (pc / "SegmentationClassContext" / "2008_000002.png").read_bytes() == b"pc-png"
    assert [r.range_start for r in second_part] == [None, 10]
    assert leftovers(data) == []


def test_cityscapes_official_zips_are_accepted_with_from(fetch_env, layout_calls, tmp_path):
    downloads = tmp_path / "browser-downloads"
    downloads.mkdir()
    stem = "frankfurt/frankfurt_000000_000294"
    (downloads / "gtFine_trainvaltest.zip").write_bytes(
        _zip({f"gtFine/val/{stem}_gtFine_labelIds.png": b"ids", "README": b"r", "license.txt": b"l"})
    )
    (downloads / "leftImg8bit_trainvaltest.zip").write_bytes(
        _zip({f"leftImg8bit/val/{stem}_leftImg8bit.png": b"img", "README": b"r", "license.txt": b"l"})
    )
    (downloads / "notes.txt").write_text("unrelated file in the same folder")

    with pytest.raises(FetchError, match="missing: leftImg8bit_trainvaltest.zip"):
        fetch_dataset("cityscapes", sources=[downloads / "gtFine_trainvaltest.zip"], progress=False)

    dest = fetch_dataset("cityscapes", sources=[downloads], progress=False)
    assert dest == fetch_env / "data" / "CityScapes"
    assert (dest / "leftImg8bit" / "val" / f"{stem}_leftImg8bit.png").read_bytes() == b"img"
    assert (dest / "gtFine" / "val" / f"{stem}_gtFine_labelIds.png").read_bytes() == b"ids"
    assert (downloads / "gtFine_trainvaltest.zip").exists()  # the user's files are left alone


def test_split_7z_from_first_part_and_root_override(fetch_env, layout_calls, tmp_path):
    import py7zr

    source = tmp_path / "src" / "CityScapes"
    (source / "leftImg8bit" / "val" / "x").mkdir(parents=True)
    (source / "gtFine" / "val" / "x").mkdir(parents=True)
    (source / "leftImg8bit" / "val" / "x" / "x_1_1_leftImg8bit.png").write_bytes(b"img")
    (source / "gtFine" / "val" / "x" / "x_1_1_gtFine_labelIds.png").write_bytes(b"ids")
    with py7zr.SevenZipFile(tmp_path / "whole.7z", "w") as archive:
        archive.writeall(source, "CityScapes")
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, piece in enumerate(_split((tmp_path / "whole.7z").read_bytes(), 11), start=1):
        (folder / f"CityScapes.7z.{i:03d}").write_bytes(piece)
    target = tmp_path / "elsewhere" / "cs"
    dest = fetch_dataset("cityscapes", root=target, sources=[folder / "CityScapes.7z.001"], progress=False)
    assert dest == target
    assert (target / "gtFine" / "val" / "x" / "x_1_1_gtFine_labelIds.png").read_bytes() == b"ids"


def test_every_source_failing_prints_the_manual_steps(fetch_env, layout_calls, capfd):
    with FileServer() as server:
        with pytest.raises(FetchError) as err:
            fetch_dataset("vspw", mirror=server.url("/gh"), progress=False)
    message = str(err.value)
    assert "\n" not in message and message.startswith("could not download VSPW: 127.0.0.1:")
    assert message.endswith(": HTTP 404 Not Found")
    assert "https://www.vspwdataset.com/" in capfd.readouterr().err
    data = fetch_env / "data"
    assert not (data / "VSPW_480p").exists() and leftovers(data) == []


def test_corrupt_download_is_deleted_for_the_next_run(fetch_env, layout_calls):
    good = _targz({f"ADE20k/{k}": v for k, v in ADE_FILES.items()})
    with FileServer() as server:
        server.add(RELEASE_PATH + "ADE20k.tar.gz", good[: len(good) - 30])  # truncated upstream file
        with pytest.raises(FetchError, match="run the command again"):
            fetch_dataset("ade20k", mirror=server.url("/gh"), progress=False)
        data = fetch_env / "data"
        assert not (data / "ADE20k").exists() and list((data / ".downloads").iterdir()) == []
        server.add(RELEASE_PATH + "ADE20k.tar.gz", good)
        assert (fetch_dataset("ade20k", mirror=server.url("/gh"), progress=False) / next(iter(ADE_FILES))).exists()


def test_the_real_layout_check_rejects_an_incomplete_dataset(fetch_env):
    """No stub: repro.datasets.check_dataset runs on what was unpacked (2 of 10000 LIP val images)."""
    archive = _targz(
        {
            "LIP/val_images/1_1.jpg": b"not really a jpeg",
            "LIP/val_segmentations/1_1.png": b"not really a png",
            "LIP/val_id.txt": b"1_1\n",
        }
    )
    with FileServer() as server:
        server.add(RELEASE_PATH + "LIP.tar.gz", archive)
        with pytest.raises(DatasetError, match="LIP") as first:
            fetch_dataset("lip", mirror=server.url("/gh"), progress=False, keep_archives=False)
        dest = fetch_env / "data" / "LIP"
        assert (dest / "val_id.txt").is_file()  # kept for inspection
        assert (fetch_env / "data" / ".downloads" / "LIP.tar.gz").is_file()  # kept: check failed
        with pytest.raises(DatasetError, match="rerun with --force"):
            fetch_dataset("lip", mirror=server.url("/gh"), progress=False)
        assert len(server.requests_for(RELEASE_PATH + "LIP.tar.gz")) == 1
    assert "unpacked to" in str(first.value)


def test_unknown_dataset_name_suggests(fetch_env):
    with pytest.raises(DatasetError) as err:
        find_dataset("cityscape")
    assert err.value.exit_code == 2 and "cityscapes" in str(err.value)
    assert find_dataset("PascalContext", aliases=True).name == "pascalcontext59"  # as `repro fetch --dataset`


def test_every_dataset_has_sources_and_manual_steps():
    expected_upstream = {
        "ade20k": ["ADE20k.tar.gz"],
        "cityscapes": [f"CityScapes.7z.{i:03d}" for i in range(1, 12)],
        "cocostuff10k": ["COCOStuff10k.tar.gz"],
        "lip": ["LIP.tar.gz"],
        "voc": ["VOCdevkit.zip.001", "VOCdevkit.zip.002", "VOCdevkit.zip.003"],
        "pascalcontext59": ["PascalContext.tar.gz"],
        "vspw": [f"VSPW_480p.zip.{i:03d}" for i in range(1, 11)],
    }
    assert set(DATASETS) == set(expected_upstream)
    for name, files in expected_upstream.items():
        upstream = DATASETS[name].sources[0]
        assert upstream.key == "upstream"
        urls = [url for archive in upstream.archives for url in archive.parts]
        assert urls == [
            "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_datasets/" + f for f in files
        ]
        manual = DATASETS[name].manual
        assert files[0] in manual and "repro fetch" in manual  # what to download, how to import it
