"""`repro.status` and `repro status`: checkpoint, dataset and results per model, without torch.

The small report manifest (tests/fixtures/report/manifest.yaml) names ADE20k, Cityscapes and LIP
rows; each test builds a cache ($REPRO_HOME), a data root and a results folder around it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest
from synthetic_data import make_ade20k, make_lip
from typer.testing import CliRunner

from repro import status
from repro.cli import app
from repro.datasets import DATASETS
from repro.errors import CheckpointError, ReproError, UnknownModelError
from repro.fetch.cache import checkpoint_status, resolve_checkpoint
from repro.manifest import load_manifest
from repro.paths import checkpoint_dir
from repro.results.files import EvalResult, write_result

MANIFEST = Path(__file__).parent / "fixtures" / "report" / "manifest.yaml"
CHECKPOINT_BYTES = b"not really a checkpoint, but the size and digest are what status reads" * 10
SHA = hashlib.sha256(CHECKPOINT_BYTES).hexdigest()
OTHER_SHA = "0" * 64

runner = CliRunner()


def settings_of(model_id: str, protocol: str) -> dict:
    """The fixture manifest's protocol settings (a result of other settings is stale)."""
    entry = next((e for e in load_manifest(MANIFEST).entries if e.id == model_id), None)
    return entry.protocols[protocol].model_dump(mode="json") if entry and protocol in entry.protocols else {}


def make_result(model_id: str, protocol: str, miou: float | None = 40.0, **overrides) -> EvalResult:
    fields = dict(
        model_id=model_id, protocol=protocol, settings=settings_of(model_id, protocol), dataset="ade20k", split="val", data_root="/d",
        status="complete", miou=miou, num_images=2000, num_images_total=2000, device="cpu",
        torch_version="2.13.0", repro_version="0.1.0", started=datetime(2024, 5, 1, tzinfo=timezone.utc),
        finished=datetime(2024, 5, 1, 1, tzinfo=timezone.utc), seconds=1.0, images_per_second=1.0,
        checkpoint_sha256=SHA,
    )
    fields.update(overrides)
    return EvalResult(**fields)


def cache_checkpoint(model_id: str, *, content: bytes = CHECKPOINT_BYTES, record: dict | None = None) -> Path:
    """A checkpoint file in the cache and its lock record, as `repro fetch` leaves them."""
    from repro.fetch.checkpoints import lock_file_path

    path = checkpoint_dir(model_id) / f"{model_id}.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    lock = lock_file_path()
    data = json.loads(lock.read_text()) if lock.exists() else {}
    data[model_id] = record or {"file": path.name, "sha256": SHA, "url": "https://x/y.pth", "size": len(content)}
    lock.write_text(json.dumps(data))
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    for name in ("REPRO_RESULTS", "REPRO_MANIFEST", *(f"REPRO_DATA_{n.upper()}" for n in DATASETS)):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))
    return tmp_path


@pytest.fixture
def scene(home, monkeypatch):
    """Every state once: see the assertions of test_every_state."""
    make_lip(home / "data" / "LIP", n_val=3)
    monkeypatch.setitem(DATASETS["lip"].splits, "val", 3)  # the mini LIP is the whole split
    make_ade20k(home / "data" / "ADE20k", n_val=2)  # 2 of ADE20k's 2000: incomplete

    cache_checkpoint("mcibi_r50_ade")
    wrong_size = cache_checkpoint("mcibi_r101_ade")
    wrong_size.write_bytes(CHECKPOINT_BYTES + b"x")
    (checkpoint_dir("v2_fcn_lip")).mkdir(parents=True)
    (checkpoint_dir("v2_fcn_lip") / "v2_fcn_lip.pth.part").write_bytes(b"half")
    (checkpoint_dir("v2_upernet_lip")).mkdir(parents=True)
    (checkpoint_dir("v2_upernet_lip") / "v2_upernet_lip.pth").write_bytes(b"no record")

    results = home / "home" / "results"
    for result in (
        make_result("mcibi_r50_ade", "single"),
        make_result("mcibi_r50_ade", "ms+flip", checkpoint_sha256=OTHER_SHA),  # stale: another file
        make_result("mcibi_r101_ade", "single"),  # stale: upstream-head, the row's default is training-era
        make_result("mcibi_r101_ade", "ms+flip", variant="training-era"),
        make_result("v2_upernet_lip", "single", status="partial", num_images=50, num_images_total=10000, limit=50),
        make_result("v2_upernet_lip", "ms+flip", status="partial", num_images=3, num_images_total=3,
                    num_images_official=10000, partial_reason="subset"),
        make_result("mcibi_r50_city", "ms+flip", None, status="server", split="test", submission="/s/c.zip"),
    ):
        write_result(result, results)
    (results / "v2_fcn_lip__single.json").write_text("{broken")
    return home


def states(report: status.StatusReport) -> dict:
    return {
        m.model_id: (m.checkpoint.state, m.data.state, {p.protocol: p.state for p in m.protocols})
        for m in report.models
    }


# ------------------------------------------------------------------------------ the API


def test_every_state(scene):
    report = status.model_statuses(manifest=load_manifest(MANIFEST))
    assert states(report) == {
        "mcibi_r50_ade": ("cached", "incomplete", {"single": "complete", "ms+flip": "stale"}),
        "mcibi_r101_ade": ("mismatch", "incomplete", {"single": "stale", "ms+flip": "complete"}),
        "mcibi_r50_city": ("missing", "missing", {"ms+flip": "server"}),
        "v2_fcn_lip": ("interrupted", "complete", {"single": "not run"}),
        "v2_upernet_lip": ("unrecorded", "complete", {"single": "partial", "flip": "not run", "ms+flip": "partial"}),
    }
    by_id = {m.model_id: m for m in report.models}
    r50 = by_id["mcibi_r50_ade"]
    assert r50.checkpoint.detail == "cached (verified at fetch)" and r50.checkpoint.sha256 == SHA
    assert r50.checkpoint.verified_against == "lock file"
    assert "checkpoint sha256 000000000000…, not " + SHA[:12] in r50.protocols[1].detail
    r101 = by_id["mcibi_r101_ade"]
    assert r101.default_variant == "training-era"
    assert r101.protocols[0].detail == "upstream-head forward, not training-era"
    assert "repro fetch mcibi_r101_ade --force" in r101.checkpoint.detail
    upernet = {p.protocol: p for p in by_id["v2_upernet_lip"].protocols}
    assert upernet["single"].detail == "50/10000 images (--limit)"
    assert upernet["ms+flip"].detail == "3/10000 images (subset of the dataset)"
    assert "repro fetch v2_upernet_lip" in by_id["v2_upernet_lip"].checkpoint.detail
    assert "resume" in by_id["v2_fcn_lip"].checkpoint.detail
    # Datasets: counted once each, with what was found.
    datasets = {d.dataset: d for d in report.datasets}
    assert (datasets["ade20k"].count, datasets["ade20k"].expected) == (2, 2000)
    assert "repro data check ade20k" in datasets["ade20k"].detail
    assert datasets["lip"].count == 3 and datasets["cityscapes"].split == "test"
    assert "repro fetch --dataset cityscapes" in datasets["cityscapes"].detail
    # The broken result file is named, not fatal.
    assert len(report.notes) == 1 and "v2_fcn_lip__single.json" in report.notes[0]


def test_eval_names_each_cached_checkpoint_as_status_does(scene, monkeypatch):
    """Issue 25 #3: a damaged cached file made eval say "no cached checkpoint" while status said
    "checkpoint mismatch: N bytes, M when verified" with the fix; both now ask checkpoint_status."""
    monkeypatch.setenv("REPRO_MANIFEST", str(MANIFEST))
    models = {m.model_id: m.checkpoint for m in status.model_statuses(manifest=load_manifest(MANIFEST)).models}
    assert resolve_checkpoint("mcibi_r50_ade", None) == Path(models["mcibi_r50_ade"].path)
    with pytest.raises(CheckpointError) as damaged:
        resolve_checkpoint("mcibi_r101_ade", None)
    size = len(CHECKPOINT_BYTES)
    assert str(damaged.value) == (f"the cached checkpoint of mcibi_r101_ade is damaged: {size + 1} bytes, {size} "
                                  "when verified: run `repro fetch mcibi_r101_ade --force`")
    assert models["mcibi_r101_ade"].detail in str(damaged.value)
    for model_id in ("v2_fcn_lip", "v2_upernet_lip"):  # interrupted, unrecorded: status's words and fix
        with pytest.raises(CheckpointError) as unusable:
            resolve_checkpoint(model_id, None)
        assert str(unusable.value).startswith(f"no verified checkpoint for {model_id}: ")
        assert models[model_id].detail in str(unusable.value)
    with pytest.raises(CheckpointError, match=r"^no cached checkpoint for mcibi_r50_city; run `repro fetch"):
        resolve_checkpoint("mcibi_r50_city", None)


def test_verify_rehashes(scene):
    manifest = load_manifest(MANIFEST)
    ids = ["mcibi_r50_ade"]
    assert status.model_statuses(ids, manifest=manifest, verify=True).models[0].checkpoint.state == "verified"
    # Same size, other bytes: only a re-hash sees it.
    path = checkpoint_dir("mcibi_r50_ade") / "mcibi_r50_ade.pth"
    path.write_bytes(CHECKPOINT_BYTES[::-1])
    assert status.model_statuses(ids, manifest=manifest).models[0].checkpoint.state == "cached"
    checked = status.model_statuses(ids, manifest=manifest, verify=True).models[0].checkpoint
    assert checked.state == "mismatch" and "--force" in checked.detail


def test_manifest_digest_wins_over_the_lock_record(home):
    manifest = load_manifest(MANIFEST)
    entry = manifest.get("mcibi_r50_ade").model_copy(update={"sha256": OTHER_SHA})
    cache_checkpoint("mcibi_r50_ade")  # recorded with SHA
    found = checkpoint_status(entry)
    assert found.state == "mismatch" and "manifest" in found.detail
    assert checkpoint_status(manifest.get("mcibi_r50_ade")).state == "cached"


def test_default_variant_result_counts_and_missing_default_results_folder(home):
    manifest = load_manifest(MANIFEST)
    # Nothing evaluated yet: the default folder may not exist.
    report = status.model_statuses(["mcibi_r101_ade"], manifest=manifest)
    assert report.results_dir == str(home / "home" / "results")
    assert {p.state for p in report.models[0].protocols} == {"not run"}
    # A given folder must exist.
    with pytest.raises(ReproError, match="does not exist"):
        status.model_statuses(["mcibi_r101_ade"], manifest=manifest, results_dir=home / "nope")
    # Two variants of one protocol (older training-era, newer upstream-head): the default counts.
    results = home / "res"
    write_result(make_result("mcibi_r101_ade", "single", variant="training-era"), results)
    newer = make_result("mcibi_r101_ade", "ms+flip", finished=datetime(2025, 1, 1, tzinfo=timezone.utc))
    write_result(newer.model_copy(update={"protocol": "single"}), results / "other")
    found, _ = status.read_results_tolerant(results)
    found += status.read_results_tolerant(results / "other")[0]
    picked, others = status.choose_result([r for _, r in found], "training-era")
    assert picked.variant == "training-era" and [o.variant for o in others] == ["upstream-head"]
    assert status.choose_result([r for _, r in found], "upstream-head")[0].variant == "upstream-head"


def test_old_result_without_variant_means_upstream_head(home):
    results = home / "home" / "results"
    path = write_result(make_result("mcibi_r101_ade", "single"), results)
    data = json.loads(path.read_text())
    data.pop("variant", None)
    path.write_text(json.dumps(data))
    report = status.model_statuses(["mcibi_r101_ade"], manifest=load_manifest(MANIFEST))
    single = report.models[0].protocols[0]
    assert (single.state, single.variant) == ("stale", "upstream-head")


def test_stale_compares_the_protocol_settings(home):
    """Status asks the same rule as the engine: other protocol settings make a result stale."""
    results = home / "home" / "results"
    changed = {**settings_of("mcibi_r50_ade", "single"), "flip": True}
    write_result(make_result("mcibi_r50_ade", "single", settings=changed), results)
    single = status.model_statuses(["mcibi_r50_ade"], manifest=load_manifest(MANIFEST)).models[0].protocols[0]
    assert single.state == "stale" and single.detail == "protocol settings differ (flip)"


def test_a_subset_result_is_stale_once_its_folder_grew(home, monkeypatch):
    make_lip(home / "data" / "LIP", n_val=3)
    monkeypatch.setitem(DATASETS["lip"].splits, "val", 3)
    subset = make_result("v2_fcn_lip", "single", dataset="lip", status="partial", num_images=2,
                         num_images_total=2, num_images_official=3, partial_reason="subset")
    write_result(subset, home / "home" / "results")
    single = status.model_statuses(["v2_fcn_lip"], manifest=load_manifest(MANIFEST)).models[0].protocols[0]
    assert single.state == "stale" and "2 images in the folder then, 3 now" in single.detail


def test_the_current_file_is_the_complete_fp32_one_and_the_others_are_listed(home):
    """A newer --limit smoke run or bf16 run beside a finished result does not stand for the row."""
    results = home / "home" / "results"
    later = datetime(2025, 1, 1, tzinfo=timezone.utc)
    full = write_result(make_result("mcibi_r50_ade", "single", 44.0), results)
    smoke = write_result(make_result("mcibi_r50_ade", "single", 30.0, status="partial", partial_reason="limit",
                                     limit=5, num_images=5, finished=later), results)
    half = write_result(make_result("mcibi_r50_ade", "single", 43.9, precision="bf16", finished=later), results)
    assert len({full, smoke, half}) == 3  # three files: nothing was overwritten
    report = status.model_statuses(["mcibi_r50_ade"], manifest=load_manifest(MANIFEST))
    single = report.models[0].protocols[0]
    assert (single.state, single.miou, single.result_file) == ("complete", 44.0, str(full))
    assert single.other_files == sorted([str(smoke), str(half)])
    text = status.render_table(report, width=None)
    assert f"mcibi_r50_ade single: current {full.name}; also {half.name}, {smoke.name}" in text


def test_unknown_id(home):
    with pytest.raises(UnknownModelError, match="did you mean mcibi_r50_ade"):
        status.model_statuses(["mcibi_r50_adek"], manifest=load_manifest(MANIFEST))


# ------------------------------------------------------------------------------ rendering


def test_table_at_80_columns_cuts_nothing(scene):
    report = status.model_statuses(manifest=load_manifest(MANIFEST))
    text = status.render_table(report, width=80)
    lines = text.splitlines()
    # Lines holding a (long, temporary) path may be longer; nothing else is.
    assert all(len(line) <= 80 for line in lines if str(scene) not in line), text
    model_lines = {line.split()[0]: line.split()[1:] for line in lines if line.startswith(("mcibi_", "v2_"))}
    assert model_lines["mcibi_r50_ade"] == ["cached", "complete", "stale"]
    assert model_lines["v2_upernet_lip"] == ["unrecorded", "partial", "—", "partial"]
    assert [line.split() for line in lines if line.startswith("MODEL")] == [
        ["MODEL", "CHECKPOINT", "single", "flip", "ms+flip"]
    ]
    assert "MODEL" in text and "DATASET" in text and "cached (verified at fetch)" not in text
    assert "stale: measured under other conditions than a default run now" in " ".join(lines)
    assert "\x1b[" not in text  # no colour codes


def test_long_ids_get_their_own_line_and_wide_output_is_one_line_per_model(home):
    zoo = load_manifest()
    # LIP adds the flip column: the longest id no longer fits beside three protocol columns.
    ids = ["memorynetv2_upernet_resnest101os8_pascalcontext59", "mcibi_deeplabv3_r50_lip"]
    report = status.model_statuses(ids, manifest=zoo)
    narrow = status.render_table(report, width=80).splitlines()
    long_id = ids[0]
    at = narrow.index(long_id)  # alone on its line, whole
    assert narrow[at + 1].split() == ["missing", "—", "—"]
    assert all(len(line) <= 80 for line in narrow if str(home) not in line)
    wide = status.render_table(report, width=None).splitlines()
    assert any(line.startswith(long_id) and line.split()[1:] == ["missing", "—", "—"] for line in wide)
    details = " ".join(wide)
    assert f"2 checkpoints not fetched: repro fetch --weights-only {ids[1]} {ids[0]}" in details  # document order


def test_json_round_trip(scene):
    report = status.model_statuses(manifest=load_manifest(MANIFEST))
    data = json.loads(status.status_json(report))
    assert data["results_dir"] == str(scene / "home" / "results")
    models = {m["model_id"]: m for m in data["models"]}
    assert models["mcibi_r50_ade"]["checkpoint"]["state"] == "cached"
    assert models["mcibi_r50_ade"]["dataset_state"] == "incomplete"
    assert [p["state"] for p in models["v2_upernet_lip"]["protocols"]] == ["partial", "not run", "partial"]
    assert {d["dataset"]: d["state"] for d in data["datasets"]} == {
        "ade20k": "incomplete", "cityscapes": "missing", "lip": "complete"
    }


# ------------------------------------------------------------------------------ the command


def test_cli_table_and_json(scene):
    args = ["status", "--manifest", str(MANIFEST)]
    table = runner.invoke(app, args, env={"COLUMNS": "80"})
    assert table.exit_code == 0, table.output
    assert "mcibi_r50_ade" in table.stdout and "DATASET" in table.stdout
    as_json = runner.invoke(app, [*args, "--format", "json", "v2_upernet_lip"])
    assert as_json.exit_code == 0, as_json.output
    assert [m["model_id"] for m in json.loads(as_json.stdout)["models"]] == ["v2_upernet_lip"]


def test_cli_data_root_options(scene, tmp_path):
    args = ["status", "--manifest", str(MANIFEST), "--format", "json", "v2_fcn_lip"]
    elsewhere = make_lip(tmp_path / "my_lip", n_val=3)
    for extra in (["--data-root", str(elsewhere)], ["--dataset-root", f"lip={elsewhere}"]):
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)["datasets"][0]
        assert (data["root"], data["state"]) == (str(elsewhere), "complete")


def test_cli_unknown_id_and_missing_results(home):
    typo = runner.invoke(app, ["status", "--manifest", str(MANIFEST), "mcibi_r50_adek"])
    assert typo.exit_code == 2
    lines = typo.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown model id 'mcibi_r50_adek'; did you mean mcibi_r50_ade")
    missing = runner.invoke(app, ["status", "--manifest", str(MANIFEST), "--results", str(home / "nope")])
    assert missing.exit_code == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.output


def test_status_does_not_import_torch(scene):
    """`repro status` is a fast command: a fresh process must not load torch (nor the models)."""
    code = textwrap.dedent(
        f"""
        import sys
        from repro.cli import app
        try:
            app(["status", "--manifest", {str(MANIFEST)!r}, "--verify"])
        except SystemExit as end:
            assert not end.code, end.code
        heavy = [m for m in ("torch", "repro.models", "repro.inference", "matplotlib") if m in sys.modules]
        print("HEAVY", heavy)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "mcibi_r50_ade" in out.stdout  # it did run
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_two_candidate_dataset_folders_are_a_detail_not_a_failure(home):
    make_lip(home / "data" / "lip_a", n_val=1)
    make_lip(home / "data" / "lip_b", n_val=1)
    result = runner.invoke(app, ["status", "--manifest", str(MANIFEST), "--format", "json", "v2_fcn_lip"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["datasets"][0]
    assert data["state"] == "missing" and "several lip folders" in data["detail"]
