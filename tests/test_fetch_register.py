"""Importing what the user already has: `fetch ID --from FILE.pth` (copy or --link) and
`fetch --dataset NAME --from FOLDER` (an unpacked dataset, registered as a link after the checks)."""

from __future__ import annotations

import hashlib

import pytest
from fetch_support import checkpoint_bytes, fetch_env, fitting_checkpoint_bytes  # noqa: F401 - fixture
from typer.testing import CliRunner

import synthetic_data as sd
from repro.cli import app
from repro.fetch import checkpoint_path, read_lock_file

runner = CliRunner()
MODEL = "memorynetv2_upernet_resnet101os8_lip"  # the README's smoke-run model (MCIBI++, 20 classes)


def _fetch(*args):
    result = runner.invoke(app, ["fetch", *map(str, args), "--no-progress"])
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def lip_checkpoint(tmp_path):
    path = tmp_path / "downloads" / "mcibiplusplus_upernet_resnet101os8_lip.pth"
    path.parent.mkdir()
    path.write_bytes(fitting_checkpoint_bytes(MODEL))  # the import checks every key and shape
    return path


# ---------------------------------------------------------------------------------- checkpoints


def test_readme_smoke_import_needs_no_weights_only(fetch_env, lip_checkpoint):
    result = _fetch(MODEL, "--from", lip_checkpoint)  # as the README writes it
    assert result.exit_code == 0, result.output
    cached = fetch_env / "cache" / "checkpoints" / MODEL / lip_checkpoint.name
    assert result.stdout.strip() == f"{MODEL}: {cached}"  # the checkpoint only, no dataset
    assert not cached.is_symlink() and cached.read_bytes() == lip_checkpoint.read_bytes()
    assert not (fetch_env / "data").exists()


def test_link_verifies_then_links_instead_of_copying(fetch_env, lip_checkpoint):
    result = _fetch(MODEL, "--from", lip_checkpoint, "--link")
    assert result.exit_code == 0, result.output
    cached = fetch_env / "cache" / "checkpoints" / MODEL / lip_checkpoint.name
    assert cached.is_symlink() and cached.resolve() == lip_checkpoint.resolve()
    assert checkpoint_path(MODEL) == cached
    assert read_lock_file()[MODEL]["sha256"] == hashlib.sha256(lip_checkpoint.read_bytes()).hexdigest()
    assert _fetch(MODEL, "--from", lip_checkpoint, "--link").exit_code == 0  # again: same link, fine


def test_link_of_a_wrong_checkpoint_leaves_nothing(fetch_env, tmp_path):
    wrong = tmp_path / "ade.pth"
    wrong.write_bytes(checkpoint_bytes(150, plusplus=True))
    result = _fetch(MODEL, "--from", wrong, "--link")
    assert result.exit_code == 1 and "150 classes (ADE20k?)" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (fetch_env / "cache" / "checkpoints" / MODEL).exists()


def test_link_refuses_to_replace_a_different_file_unless_forced(fetch_env, lip_checkpoint, tmp_path):
    cached = fetch_env / "cache" / "checkpoints" / MODEL / lip_checkpoint.name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"something else")
    result = _fetch(MODEL, "--from", lip_checkpoint, "--link")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: {cached} already holds a different file; pass --force to replace it by a link to "
        f"{lip_checkpoint.resolve()}"
    )
    assert cached.read_bytes() == b"something else"
    assert _fetch(MODEL, "--from", lip_checkpoint, "--link", "--force").exit_code == 0
    assert cached.is_symlink() and lip_checkpoint.exists()


def test_link_needs_from(fetch_env):
    result = _fetch(MODEL, "--link")
    assert result.exit_code == 2 and "--link goes with --from" in result.stderr


def test_from_with_an_id_and_a_dataset_is_ambiguous(fetch_env, lip_checkpoint):
    result = _fetch(MODEL, "--dataset", "lip", "--from", lip_checkpoint)
    assert result.exit_code == 2 and "--from imports one item" in result.stderr


# ------------------------------------------------------------------------------------- datasets


def test_unpacked_dataset_folder_is_checked_then_linked(fetch_env, tmp_path):
    mine = sd.make_lip(tmp_path / "mine" / "lip_2016", n_val=2)
    result = _fetch("--dataset", "lip", "--from", mine, "--allow-subset")
    assert result.exit_code == 0, result.output
    place = fetch_env / "data" / "LIP"
    assert result.stdout.strip() == f"lip: {place}"
    assert place.is_symlink() and place.resolve() == mine.resolve()  # a link, nothing copied
    again = runner.invoke(app, ["fetch", "--dataset", "lip", "--from", str(mine), "--allow-subset"])
    assert again.exit_code == 0 and "already registered" in again.stderr
    check = runner.invoke(app, ["data", "check", "lip", "--allow-subset"])  # found by every command
    assert check.exit_code == 0 and f"LIP at {place}" in check.output


def test_unpacked_folder_failing_the_checks_is_not_registered(fetch_env, tmp_path):
    mine = sd.make_lip(tmp_path / "mine", n_val=2)
    result = _fetch("--dataset", "lip", "--from", mine)  # 2 of 10000 images, no --allow-subset
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: LIP at {mine} fails the layout check: LIP val has 2 images")
    assert result.stderr.strip().endswith("nothing was registered") and result.stderr.count("\n") == 1
    assert not (fetch_env / "data" / "LIP").exists()


def test_registering_never_replaces_a_real_folder(fetch_env, tmp_path):
    mine = sd.make_lip(tmp_path / "mine", n_val=2)
    existing = sd.make_lip(fetch_env / "data" / "LIP", n_val=1, seed=3)
    result = _fetch("--dataset", "lip", "--from", mine, "--allow-subset", "--force")
    assert result.exit_code == 1
    assert f"{existing} already exists and is not {mine}" in result.stderr
    assert f"--dataset-root lip={mine}" in result.stderr
    assert not existing.is_symlink() and (existing / "val_id.txt").is_file()


def test_a_link_to_another_folder_is_replaced_only_with_force(fetch_env, tmp_path):
    first = sd.make_lip(tmp_path / "first", n_val=1)
    second = sd.make_lip(tmp_path / "second", n_val=2)
    assert _fetch("--dataset", "lip", "--from", first, "--allow-subset").exit_code == 0
    place = fetch_env / "data" / "LIP"
    refused = _fetch("--dataset", "lip", "--from", second, "--allow-subset")
    assert refused.exit_code == 1 and f"already links to {first}" in refused.stderr
    assert place.resolve() == first
    assert _fetch("--dataset", "lip", "--from", second, "--allow-subset", "--force").exit_code == 0
    assert place.resolve() == second and (first / "val_id.txt").is_file()


def test_register_under_data_root_and_dataset_root(fetch_env, tmp_path):
    mine = sd.make_lip(tmp_path / "mine", n_val=1)
    other_root = tmp_path / "other_data"
    assert _fetch("--dataset", "lip", "--from", mine, "--allow-subset", "--data-root", other_root).exit_code == 0
    assert (other_root / "LIP").resolve() == mine
    explicit = tmp_path / "explicit_lip"
    result = _fetch("--dataset", "lip", "--from", mine, "--allow-subset", "--dataset-root", f"lip={explicit}")
    assert result.exit_code == 0 and explicit.resolve() == mine


def test_link_with_archives_is_refused(fetch_env, tmp_path):
    archive = tmp_path / "LIP.tar.gz"
    archive.write_bytes(b"not unpacked")
    result = _fetch("--dataset", "lip", "--from", archive, "--link")
    assert result.exit_code == 2 and "--link needs --from with an unpacked LIP folder" in result.stderr


def test_fetch_finds_a_dataset_under_any_folder_name(fetch_env, monkeypatch, tmp_path):
    mine = sd.make_lip(fetch_env / "data" / "look_into_person", n_val=2)
    result = runner.invoke(app, ["fetch", "--dataset", "lip", "--allow-subset"])  # no download: it is there
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"lip: {mine}" and "accepted as a subset: 2 of 10000 images" in result.stderr
    assert "complete" not in result.stderr
    refused = _fetch("--dataset", "lip", "--force")  # never deletes a folder found elsewhere
    assert refused.exit_code == 1 and "--force deletes only what repro put there" in refused.stderr
    assert (mine / "val_id.txt").is_file()


def test_link_of_the_cached_file_itself_keeps_it(fetch_env, lip_checkpoint):
    assert _fetch(MODEL, "--from", lip_checkpoint).exit_code == 0  # a copy in the cache
    cached = fetch_env / "cache" / "checkpoints" / MODEL / lip_checkpoint.name
    content = cached.read_bytes()
    result = _fetch(MODEL, "--from", cached, "--link")  # --from the cache's own file
    assert result.exit_code == 0, result.output
    assert not cached.is_symlink() and cached.read_bytes() == content  # not a link to itself
    assert checkpoint_path(MODEL) == cached


def test_force_never_deletes_a_folder_named_by_the_user(fetch_env, tmp_path):
    mine = sd.make_lip(tmp_path / "my_lip", n_val=2)  # a partial copy: fails the count check
    result = _fetch("--dataset", "lip", "--dataset-root", f"lip={mine}")
    assert result.exit_code == 1 and "--allow-subset" in result.stderr and "--force" not in result.stderr
    refused = _fetch("--dataset", "lip", "--dataset-root", f"lip={mine}", "--force")
    assert refused.exit_code == 1 and "--force deletes only what repro put there" in refused.stderr
    assert (mine / "val_id.txt").is_file()
