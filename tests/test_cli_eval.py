"""`repro eval`: run planning, failures in --all, and an end-to-end run with a real architecture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from synthetic_data import make_lip
from typer.testing import CliRunner

from repro.cli import app
from repro.cli.eval import PlannedRun, parse_shard, plan_runs
from repro.errors import ReproError, UnknownModelError
from repro.manifest import DEFAULT_PATH, load_manifest

runner = CliRunner()


# ---------------------------------------------------------------------------------------------
# Planning


def test_documented_runs_every_protocol_of_the_row():
    manifest = load_manifest()
    runs, notes = plan_runs(manifest, ["memorynetv2_upernet_resnet101os8_lip"], False, None, "documented")
    assert runs == [PlannedRun("memorynetv2_upernet_resnet101os8_lip", p) for p in ("single", "flip", "ms+flip")]
    assert notes == []


def test_named_protocol_missing_errors_for_an_id_and_skips_in_all():
    manifest = load_manifest()
    with pytest.raises(ReproError, match="no 'flip' protocol"):
        plan_runs(manifest, ["memorynetv2_aspp_resnet50os8_ade20k"], False, None, "flip")
    runs, lacking = plan_runs(manifest, None, True, "lip", "flip")
    lip_rows = [e for e in manifest.entries if e.dataset == "lip"]
    with_flip = [e.id for e in lip_rows if "flip" in e.protocols]
    assert [r.model_id for r in runs] == with_flip and all(r.protocol == "flip" for r in runs)
    assert lacking == [e.id for e in lip_rows if "flip" not in e.protocols] and lacking


def test_documented_measures_every_documented_number_of_every_row():
    manifest = load_manifest()
    runs, lacking = plan_runs(manifest, None, True, None, "documented")
    assert lacking == []
    planned = {(r.model_id, r.protocol) for r in runs}
    documented = {(e.id, p) for e in manifest.entries for p, v in e.documented.items() if v is not None}
    assert documented and documented <= planned
    assert len(runs) == sum(len(e.protocols) for e in manifest.entries)


def test_shards_partition_the_models():
    manifest = load_manifest()
    everything, _ = plan_runs(manifest, None, True, None, "documented")
    shards = [plan_runs(manifest, None, True, None, "documented", (i, 3))[0] for i in (1, 2, 3)]
    combined = [run for shard in shards for run in shard]
    assert sorted(combined, key=everything.index) == everything
    assert len(combined) == len(set(combined))
    # a model's protocols stay together in one shard
    owners = {}
    for number, shard in enumerate(shards):
        for run in shard:
            assert owners.setdefault(run.model_id, number) == number


@pytest.mark.parametrize("text", ["0/3", "4/3", "a/b", "3", "1/0"])
def test_bad_shard(text):
    with pytest.raises(ReproError, match="--shard"):
        parse_shard(text)


def test_planning_errors():
    manifest = load_manifest()
    with pytest.raises(ReproError):
        plan_runs(manifest, ["memorynetv2_upernet_resnet101os8_lip"], True, None, "documented")
    with pytest.raises(ReproError):
        plan_runs(manifest, None, False, None, "documented")
    with pytest.raises(ReproError, match="--dataset"):
        plan_runs(manifest, ["memorynetv2_upernet_resnet101os8_lip"], False, "lip", "documented")
    with pytest.raises(UnknownModelError):
        plan_runs(manifest, ["no_such_model"], False, None, "documented")


def test_nothing_fetched_prints_the_plan_and_one_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))  # no checkpoints, no datasets
    result = runner.invoke(app, ["eval", "--all", "--dataset", "voc", "--device", "cpu", "--results", str(tmp_path / "out")])
    assert result.exit_code == 1
    voc_ids = [e.id for e in load_manifest().entries if e.dataset == "voc"]
    command = "repro fetch " + " ".join(voc_ids)
    assert f"fetch them with: {command}" in result.stderr  # the error line
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.output
    for model_id in voc_ids:  # the plan names each row and what it lacks
        assert f"{model_id}  [not fetched: checkpoint + dataset]" in result.stdout
    assert "dataset voc val: not found at" in result.stdout
    assert "evaluation summary" not in result.output


def test_all_with_nothing_fetched_names_repro_fetch_all(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["eval", "--all", "--device", "cpu"])
    assert result.exit_code == 1
    runs = len(plan_runs(load_manifest(), None, True, None, "documented")[0])
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: nothing to evaluate: {runs} runs wait for files; fetch them with: repro fetch --all"
    )
    dry = runner.invoke(app, ["eval", "--all", "--device", "cpu", "--dry-run"])
    assert dry.exit_code == 0 and "repro fetch --all" in dry.stdout and "error" not in dry.output
    assert f"plan: {runs} runs on cpu" in dry.stdout


def test_rows_without_the_protocol_are_named_in_the_plan(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["eval", "--all", "--protocol", "ms+flip", "--dataset", "lip", "--dry-run", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lacking = [e for e in load_manifest().entries if e.dataset == "lip" and "ms+flip" not in e.protocols]
    for entry in lacking:
        assert f"{entry.id}  [no 'ms+flip' protocol; it has {', '.join(entry.protocols)}]" in result.stdout
    assert f"{len(lacking)} rows have no 'ms+flip' protocol" in result.stdout


def test_single_model_error_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["eval", "memorynetv2_upernet_resnet50os8_voc", "--device", "cpu"])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: no cached checkpoint")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_damaged_cached_checkpoint_is_named_with_status_s_fix(tmp_path, monkeypatch):
    """Issue 25 #3: eval said "no cached checkpoint" where status said "checkpoint mismatch: N
    bytes, M when verified: run `repro fetch ID --force`"; eval now says it is damaged, same fix."""
    import json

    from repro.fetch.cache import lock_file_path
    from repro.paths import checkpoint_dir

    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    model = "memorynetv2_upernet_resnet50os8_voc"
    cached = checkpoint_dir(model) / f"{model}.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x80" + b"x" * 199)  # a download cut at 200 bytes
    lock_file_path().write_text(json.dumps({model: {"file": cached.name, "size": 366405658,
                                                    "sha256": load_manifest().get(model).sha256}}))
    detail = f"200 bytes, 366405658 when verified: run `repro fetch {model} --force`"
    result = runner.invoke(app, ["eval", model, "--device", "cpu"])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: the cached checkpoint of {model} is damaged: {detail}"
    shown = runner.invoke(app, ["status", model], env={"COLUMNS": "300"})
    assert f"checkpoint mismatch: {detail}" in " ".join(shown.stdout.split())


# ---------------------------------------------------------------------------------------------
# End to end: a real bundled architecture (deterministic fill) on a synthetic LIP split


MODEL = "memorynetv2_ppm_resnet50os8_lip"


def _small_manifest(path: Path) -> Path:
    """The bundled manifest reduced to MODEL, with its single protocol at 64x48 to keep CPU time low."""
    raw = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    entry = next(e for e in raw["models"] if e["id"] == MODEL)
    entry["protocols"]["single"]["resize"] = {"output_size": [64, 48], "keep_ratio": False}
    raw["models"] = [entry]
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture
def small_setup(tmp_path, monkeypatch):
    """A one-model manifest, a synthetic LIP split and a filled checkpoint (paths as a dict)."""
    from repro.models import build_segmentor, fill_model

    monkeypatch.setenv("REPRO_MANIFEST", str(_small_manifest(tmp_path / "zoo.yaml")))
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    make_lip(tmp_path / "data" / "LIP", n_val=3)
    checkpoint = tmp_path / "filled.pth"
    torch.save({"model": fill_model(build_segmentor(MODEL)).state_dict()}, checkpoint)
    return {"data": tmp_path / "data", "checkpoint": checkpoint, "out": tmp_path / "out"}


def test_eval_cli_end_to_end(tmp_path, monkeypatch):
    from repro.datasets import open_dataset
    from repro.inference.transforms import test_transform
    from repro.inference.reference import reference_predict
    from repro.models import build_segmentor, fill_model

    monkeypatch.setenv("REPRO_MANIFEST", str(_small_manifest(tmp_path / "zoo.yaml")))
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    data_root = tmp_path / "data"
    make_lip(data_root / "LIP", n_val=3)
    model = fill_model(build_segmentor(MODEL)).eval()
    checkpoint = tmp_path / "filled.pth"
    torch.save({"model": model.state_dict()}, checkpoint)

    args = ["eval", MODEL, "--checkpoint", str(checkpoint), "--data-root", str(data_root), "--limit", "2",
            "--device", "cpu", "--workers", "0", "--results", str(tmp_path / "out")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "out" / f"{MODEL}__single__subset-limit2.json").read_text())  # partial: own file
    assert written["status"] == "partial" and written["num_images"] == 2 and written["num_images_total"] == 3

    protocol = load_manifest().get(MODEL).protocols["single"]
    dataset = open_dataset("lip", data_root / "LIP", "val")
    inter, union = np.zeros(20), np.zeros(20)
    for i in range(2):
        sample = dataset[i]
        x = test_transform(sample.image, protocol)
        assert tuple(x.shape[1:]) == (64, 48)
        pred = reference_predict(model, x, protocol, 20, output_size=sample.label.shape).argmax(0).numpy()
        valid = sample.label >= 0
        for c in range(20):
            inter[c] += np.sum((pred == c) & (sample.label == c) & valid)
            union[c] += np.sum(((pred == c) | (sample.label == c)) & valid)
    with np.errstate(invalid="ignore"):
        expected = np.nanmean(np.where(union > 0, inter / union, np.nan)) * 100
    assert written["miou"] == pytest.approx(expected, abs=1e-9)

    # a second run finds the finished result: it says "kept" and nothing else (no CPU note, no
    # empty progress bar, no "wrote", no summary), and leaves the file as it was
    smoke = tmp_path / "out" / f"{MODEL}__single__subset-limit2.json"
    before = smoke.stat().st_mtime_ns
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert again.stderr.splitlines() == [f"kept: {smoke.resolve()} (use --force to redo)"] and again.stdout == ""
    assert smoke.stat().st_mtime_ns == before
    # options that do not change the number are named, not applied (the engine's own rule)
    predictions = tmp_path / "preds"
    other = runner.invoke(app, [*args, "--max-batch", "1", "--save-predictions", str(predictions)])
    assert other.exit_code == 0, other.output
    assert other.stderr.splitlines() == [
        f"kept: {smoke.resolve()}; not applied: --save-predictions {predictions.resolve()}, --max-batch 1 "
        "(--force redoes the run with them, or give another --results)"]
    assert smoke.stat().st_mtime_ns == before and not predictions.exists()


def test_hash_ahead_starts_the_checkpoint_digest_the_engine_then_uses(tmp_path, monkeypatch):
    import hashlib

    import repro.fetch.download as download
    from repro.cli.eval import _hash_ahead

    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))  # nothing fetched
    path = tmp_path / "weights.pth"
    content = b"\x80" + b"w" * 4095  # starts as a (legacy) torch.save pickle: resolve_checkpoint's light check passes
    path.write_bytes(content)
    monkeypatch.setattr(download, "_digests", {})
    _hash_ahead("mcibi_deeplabv3_r50_ade20k", path)
    assert len(download._digests) == 1  # started, keyed by the file
    assert download.file_digest(path) == hashlib.sha256(content).hexdigest()  # what build_job calls
    assert len(download._digests) == 1  # the engine waits for that hash instead of another
    _hash_ahead("mcibi_deeplabv3_r50_ade20k", None)  # not fetched: nothing to hash, no error
    assert len(download._digests) == 1


def test_ctrl_c_in_a_run_says_how_many_images_are_saved(small_setup, monkeypatch):
    """Ctrl-C during a run: exit 130 and one line with the images counted (and so saved) by then."""
    import repro.engine

    def interrupted(model_id, protocol, options, *, progress, **hooks):
        progress(0, 2)
        progress(1, 2)  # the first image counted, then Ctrl-C during the second
        raise KeyboardInterrupt

    monkeypatch.setattr(repro.engine, "evaluate", interrupted)
    args = ["eval", MODEL, "--checkpoint", str(small_setup["checkpoint"]), "--data-root", str(small_setup["data"]),
            "--limit", "2", "--device", "cpu", "--results", str(small_setup["out"])]
    result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    assert result.stderr.splitlines()[-1].endswith(
        "interrupted after 1 of 2 images; progress saved, run the same command to resume")
