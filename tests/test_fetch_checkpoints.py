"""Checkpoint fetching: URL fallbacks, verification (sha256, lock file, class count), imports, pinning."""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from fetch_support import (  # noqa: F401 - fetch_env is a fixture
    GITHUB_CKPT,
    checkpoint_bytes,
    fetch_env,
    leftovers,
    pick_row,
    write_manifest,
)
from http_server import FileServer

import repro.fetch.download as download
from repro.errors import CheckpointError, FetchError, UnknownModelError
from repro.fetch import checkpoint_class_count, checkpoint_path, fetch_checkpoint, pin_manifest, read_lock_file
from repro.manifest import load_manifest


def _row(method="mcibi", dataset="ade20k", contains="", **changes) -> dict:
    row = copy.deepcopy(pick_row(method, dataset, contains))
    row.update(changes)
    return row


def _cache(env: Path) -> Path:
    return env / "cache"


def test_fetch_verifies_caches_and_records_the_digest(fetch_env, monkeypatch, capfd):
    ckpt = checkpoint_bytes(150)
    with FileServer() as server:
        url = server.add("/ckpt/r50_ade20k.pth", ckpt)
        row = _row(weights=[url], sha256=None)
        write_manifest(fetch_env, monkeypatch, [row])
        path = fetch_checkpoint(row["id"], progress=True)
        assert path == _cache(fetch_env) / "checkpoints" / row["id"] / "r50_ade20k.pth"
        assert path.read_bytes() == ckpt
        again = fetch_checkpoint(row["aliases"][0] if row["aliases"] else row["id"])
        requests_made = len(server.requests_for("/ckpt/r50_ade20k.pth"))
    assert again == path and requests_made == 1  # the second call used the verified cache
    record = read_lock_file()[row["id"]]
    assert record == {
        "file": "r50_ade20k.pth",
        "sha256": hashlib.sha256(ckpt).hexdigest(),
        "url": url,
        "size": len(ckpt),
    }
    assert checkpoint_path(row["id"]) == path
    err = capfd.readouterr().err
    assert "downloading r50_ade20k.pth" in err and "\r" not in err and "\x1b[" not in err  # plain lines
    path.unlink()
    assert checkpoint_path(row["id"]) is None


def test_unknown_model_id_is_the_manifest_error(fetch_env, monkeypatch):
    write_manifest(fetch_env, monkeypatch, [_row()])
    with pytest.raises(UnknownModelError) as err:
        fetch_checkpoint("mcibi_deeplabv3_r50_ade20kk")
    assert err.value.exit_code == 2 and "did you mean" in str(err.value)


def test_dropped_connection_resumes_at_the_right_offset(fetch_env, monkeypatch):
    ckpt = checkpoint_bytes(150, padding=60_000)
    with FileServer() as server:
        url = server.add("/ckpt/big.pth", ckpt, drop_after=70_000)
        row = _row(weights=[url], sha256=hashlib.sha256(ckpt).hexdigest())
        write_manifest(fetch_env, monkeypatch, [row])
        path = fetch_checkpoint(row["id"], progress=False)
        log = server.requests_for("/ckpt/big.pth")
    assert [r.range_start for r in log] == [None, 70_000]
    assert path.read_bytes() == ckpt


def test_404_on_first_url_then_second_url(fetch_env, monkeypatch, capfd):
    ckpt = checkpoint_bytes(150)
    with FileServer() as server:
        gone = server.url("/old/model.pth")
        good = server.add("/new/model.pth", ckpt)
        row = _row(weights=[gone, good])
        write_manifest(fetch_env, monkeypatch, [row])
        path = fetch_checkpoint(row["id"], progress=False)
    assert path.read_bytes() == ckpt
    assert read_lock_file()[row["id"]]["url"] == good
    assert f"failed {gone} (HTTP 404" in capfd.readouterr().err  # said even when quiet


def test_wrong_checksum_fails_and_leaves_nothing(fetch_env, monkeypatch):
    right = checkpoint_bytes(150)
    wrong = checkpoint_bytes(150, padding=10)  # a valid checkpoint, but not the pinned one
    with FileServer() as server:
        url = server.add("/m.pth", wrong)
        row = _row(weights=[url], sha256=hashlib.sha256(right).hexdigest())
        write_manifest(fetch_env, monkeypatch, [row])
        with pytest.raises(FetchError) as err:
            fetch_checkpoint(row["id"], progress=False)
        assert "sha256 mismatch" in str(err.value) and "127.0.0.1" in str(err.value)  # the host; the URL is printed whole above it
        folder = _cache(fetch_env) / "checkpoints" / row["id"]
        assert not folder.exists() and leftovers(_cache(fetch_env)) == []
        assert checkpoint_path(row["id"]) is None
        server.add("/m.pth", right)  # the mirror is fixed: a later run succeeds
        assert fetch_checkpoint(row["id"], progress=False).read_bytes() == right


def test_truncated_checkpoint_is_rejected(fetch_env, monkeypatch):
    ckpt = checkpoint_bytes(150, padding=5_000)
    with FileServer() as server:
        url = server.add("/t.pth", ckpt[: len(ckpt) // 2])  # complete transfer of a broken file
        row = _row(weights=[url])
        write_manifest(fetch_env, monkeypatch, [row])
        with pytest.raises(FetchError, match="not a readable checkpoint"):
            fetch_checkpoint(row["id"], progress=False)
    assert leftovers(_cache(fetch_env)) == []
    assert not (_cache(fetch_env) / "checkpoints" / row["id"]).exists()
    assert row["id"] not in read_lock_file()


def test_link_to_another_models_file_is_skipped_by_class_count(fetch_env, monkeypatch, capfd):
    # The documented COCO-Stuff-10k Swin-L link serves the VSPW checkpoint (124 classes).
    row = _row("memorynetv2", "cocostuff10k", "swinlarge")
    vspw = checkpoint_bytes(124, plusplus=True)
    coco = checkpoint_bytes(182, plusplus=True)
    with FileServer() as server:
        first = server.add("/ssseg_memorynetv2/memorynetv2_upernet_swinlarge_vspw.pth", vspw)
        second = server.add("/ssseg_mcibiplusplus/mcibiplusplus_upernet_swinlarge_cocostuff10k.pth", coco)
        row.update(weights=[first, second], sha256=None)
        write_manifest(fetch_env, monkeypatch, [row])
        path = fetch_checkpoint(row["id"], progress=False)
    assert path.name == "mcibiplusplus_upernet_swinlarge_cocostuff10k.pth" and path.read_bytes() == coco
    err = capfd.readouterr().err
    assert "124 classes (VSPW?)" in err and "needs 182" in err
    assert not (path.parent / "memorynetv2_upernet_swinlarge_vspw.pth").exists()


def test_wrong_class_count_with_no_other_url_fails(fetch_env, monkeypatch):
    with FileServer() as server:
        url = server.add("/x.pth", checkpoint_bytes(19))
        row = _row(weights=[url])
        write_manifest(fetch_env, monkeypatch, [row])
        with pytest.raises(FetchError, match=r"19 classes \(Cityscapes\?\)"):
            fetch_checkpoint(row["id"], progress=False)
    assert leftovers(_cache(fetch_env)) == [] and row["id"] not in read_lock_file()


def test_full_disk_during_download(fetch_env, monkeypatch):
    ckpt = checkpoint_bytes(150, padding=40_000)

    def full(handle, chunk):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with FileServer() as server:
        url = server.add("/d.pth", ckpt)
        row = _row(weights=[url])
        write_manifest(fetch_env, monkeypatch, [row])
        with monkeypatch.context() as patch:
            patch.setattr(download, "_write_chunk", full)
            with pytest.raises(FetchError, match="disk full"):
                fetch_checkpoint(row["id"], progress=False)
        assert leftovers(_cache(fetch_env)) == []
        assert fetch_checkpoint(row["id"], progress=False).read_bytes() == ckpt


def test_import_from_file_and_lock_mismatch_needs_force(fetch_env, monkeypatch, tmp_path):
    first = checkpoint_bytes(150)
    other = checkpoint_bytes(150, padding=3)
    with FileServer() as server:
        url = server.add("/m.pth", first)
        row = _row(weights=[url], sha256=None)
        write_manifest(fetch_env, monkeypatch, [row])
        fetch_checkpoint(row["id"], progress=False)
    recorded = read_lock_file()[row["id"]]["sha256"]

    elsewhere = tmp_path / "downloads" / "m.pth"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(other)
    with pytest.raises(FetchError, match="recorded in checkpoints.lock.json"):
        fetch_checkpoint(row["id"], source=elsewhere, progress=False)
    assert read_lock_file()[row["id"]]["sha256"] == recorded
    assert checkpoint_path(row["id"]).read_bytes() == first  # the accepted file is untouched

    path = fetch_checkpoint(row["id"], source=elsewhere, force=True, progress=False)
    assert path.read_bytes() == other
    assert read_lock_file()[row["id"]]["sha256"] == hashlib.sha256(other).hexdigest()
    assert elsewhere.read_bytes() == other  # the user's file is copied, not moved


def test_import_of_a_wrong_file_leaves_nothing(fetch_env, monkeypatch, tmp_path):
    row = _row(weights=[])
    write_manifest(fetch_env, monkeypatch, [row])
    bad = tmp_path / "lip_model.pth"
    bad.write_bytes(checkpoint_bytes(20))
    with pytest.raises(FetchError, match=r"20 classes \(LIP\?\)"):
        fetch_checkpoint(row["id"], source=bad, progress=False)
    assert not (_cache(fetch_env) / "checkpoints" / row["id"]).exists()
    with pytest.raises(FetchError, match="no published checkpoint"):
        fetch_checkpoint(row["id"], progress=False)


def test_mirror_rewrites_the_github_base(fetch_env, monkeypatch):
    ckpt = checkpoint_bytes(150)
    with FileServer() as server:
        served = server.add("/gh/SegmentationBLWX/modelstore/releases/download/ssseg_mcibi/mcibi_deeplabv3_r50_ade20k.pth", ckpt)
        row = _row(weights=[GITHUB_CKPT + "mcibi_deeplabv3_r50_ade20k.pth"])
        write_manifest(fetch_env, monkeypatch, [row])
        monkeypatch.setenv("REPRO_MIRROR", server.url("/gh/"))
        path = fetch_checkpoint(row["id"], progress=False)
    assert path.read_bytes() == ckpt and path.name == "mcibi_deeplabv3_r50_ade20k.pth"
    assert read_lock_file()[row["id"]]["url"] == served


def test_pin_writes_digests_into_a_copy_of_the_manifest(fetch_env, monkeypatch, tmp_path):
    ckpt = checkpoint_bytes(150)
    with FileServer() as server:
        url = server.add("/p.pth", ckpt)
        pinned_row = _row(weights=[url], sha256=None)
        untouched = _row("mcibi", "lip", weights=[server.url("/never.pth")], sha256=None)
        source = write_manifest(fetch_env, monkeypatch, [pinned_row, untouched])
        fetch_checkpoint(pinned_row["id"], progress=False)
    out = tmp_path / "pinned.yaml"
    pins = pin_manifest(out)
    digest = hashlib.sha256(ckpt).hexdigest()
    assert pins == {pinned_row["id"]: digest}
    pinned = load_manifest(out)
    assert pinned.get(pinned_row["id"]).sha256 == digest
    assert pinned.get(untouched["id"]).sha256 is None
    before, after = source.read_text().splitlines(), out.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and changed == [("  sha256: null", f"  sha256: {digest}")]


def test_class_count_reads_both_methods_and_wrappers(tmp_path):
    cases = {
        "mcibi.pth": (checkpoint_bytes(59), 59),
        "plusplus.pth": (checkpoint_bytes(124, plusplus=True), 124),
        "bare.pth": (checkpoint_bytes(21, wrap=False), 21),
    }
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert checkpoint_class_count(tmp_path / name) == expected
    torch.save({"model": {"module.memory_module.memory": torch.zeros(19, 2)}}, tmp_path / "ddp.pth")
    assert checkpoint_class_count(tmp_path / "ddp.pth") == 19
    torch.save({"model": {"memory_module.memory": torch.zeros(19, 2), "decoder_cls.conv2.weight": torch.zeros(20, 4, 1, 1)}}, tmp_path / "mixed.pth")
    with pytest.raises(CheckpointError, match="inconsistent"):
        checkpoint_class_count(tmp_path / "mixed.pth")
    torch.save({"model": {"backbone.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not an MCIBI"):
        checkpoint_class_count(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint_class_count(tmp_path / "junk.pth")


def test_lock_file_is_json_keyed_by_id(fetch_env, monkeypatch):
    with FileServer() as server:
        a = _row("mcibi", "ade20k", weights=[server.add("/a.pth", checkpoint_bytes(150))])
        b = _row("mcibi", "lip", weights=[server.add("/b.pth", checkpoint_bytes(20))])
        write_manifest(fetch_env, monkeypatch, [a, b])
        fetch_checkpoint(a["id"], progress=False)
        fetch_checkpoint(b["id"], progress=False)
    data = json.loads((_cache(fetch_env) / "checkpoints.lock.json").read_text())
    assert sorted(data) == sorted([a["id"], b["id"]])


def test_interrupted_run_is_resumed_by_the_next_run(fetch_env, monkeypatch):
    ckpt = checkpoint_bytes(150, padding=80_000)
    real_write = download._write_chunk

    calls = {"n": 0}

    def interrupt(handle, chunk):
        calls["n"] += 1
        if calls["n"] == 3:  # some chunks reached the disk, then Ctrl-C
            raise KeyboardInterrupt
        real_write(handle, chunk)

    with FileServer() as server:
        url = server.add("/k.pth", ckpt)
        row = _row(weights=[url])
        write_manifest(fetch_env, monkeypatch, [row])
        with monkeypatch.context() as patch:
            patch.setattr(download, "_write_chunk", interrupt)
            with pytest.raises(KeyboardInterrupt):
                fetch_checkpoint(row["id"], progress=False)
        part = _cache(fetch_env) / "checkpoints" / row["id"] / "k.pth.part"
        kept = part.stat().st_size  # kept on purpose: the next run continues it
        assert 0 < kept < len(ckpt) and part.read_bytes() == ckpt[:kept]
        path = fetch_checkpoint(row["id"], progress=False)
        log = server.requests_for("/k.pth")
    assert [r.range_start for r in log] == [None, kept]
    assert path.read_bytes() == ckpt and not part.exists()
