"""`repro explain`: each cause check sees its planted fault, a clean run fires none; old results,
damaged evidence, pictures and the 80-column text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from explain_support import corrupt_label, make_scene_dataset, planted_run
from PIL import Image
from typer.testing import CliRunner

from repro.cli import app
from evidence_support import EvidenceBuilder
from repro.explain.explanation import explain_result, explanation_text
from repro.explain.checks import run_checks

ADE = "mcibi_deeplabv3_r50_ade20k"


@pytest.fixture(scope="module")
def ade(tmp_path_factory) -> Path:
    return make_scene_dataset("ade20k", tmp_path_factory.mktemp("ade") / "data", n=12)


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory) -> Path:
    return make_scene_dataset("cityscapes", tmp_path_factory.mktemp("cs") / "data", n=8)


def _checks(path: Path) -> dict[str, str]:
    return {f.check: f.line for f in explain_result(path).findings}


def test_clean_run_fires_no_check(ade, tmp_path):
    path = planted_run(tmp_path, "ade20k", ade)
    explanation = explain_result(path)
    assert explanation.findings == []
    assert "none of the checks fired" in explanation_text(explanation)


def test_labels_reduced_twice_are_named(ade, tmp_path):
    found = _checks(planted_run(tmp_path, "ade20k", ade, "double-reduction"))
    assert "shifted-labels" in found
    assert "prediction = label+1" in found["shifted-labels"] and "applied twice" in found["shifted-labels"]


def test_json_for_scripts(ade, tmp_path):
    path = planted_run(tmp_path, "ade20k", ade, "no-reduction")
    out = CliRunner().invoke(app, ["explain", str(path), "--format", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert [f["check"] for f in data["findings"]] == ["shifted-labels"]
    assert data["documented"] == 44.39 and data["delta"] == round(data["miou"] - 44.39, 2)
    assert data["evidence"] is True and len(data["worst_images"]) == 10


def test_labels_not_reduced_are_named(ade, tmp_path):
    found = _checks(planted_run(tmp_path, "ade20k", ade, "no-reduction"))
    assert "not applied" in found["shifted-labels"]


def test_labelids_style_ignore_is_named(cityscapes, tmp_path):
    found = _checks(planted_run(tmp_path, "cityscapes", cityscapes, "label-ids"))
    assert "ignore-share" in found and "labelIds" in found["ignore-share"]
    assert "shifted-labels" not in found


def test_clean_cityscapes_run_has_a_usual_ignore_share(cityscapes, tmp_path):
    assert _checks(planted_run(tmp_path, "cityscapes", cityscapes)) == {}


def test_a_corrupted_label_image_is_named(tmp_path):
    folder = make_scene_dataset("ade20k", tmp_path / "data", n=12)
    bad_id = corrupt_label("ade20k", folder, 5)
    path = planted_run(tmp_path / "results", "ade20k", folder)
    found = _checks(path)
    assert set(found) == {"few-images"}  # the classes only its label holds are not blamed on the model
    assert bad_id in found["few-images"] and "1 of 12 images" in found["few-images"]
    assert explain_result(path).worst_images[0].image_id == bad_id


def _evidence(pairs, num_classes=5):
    builder = EvidenceBuilder(num_classes)
    for i, (prediction, label) in enumerate(pairs):
        builder.add(f"img{i:02d}", np.asarray(prediction), np.asarray(label))
    return builder.build()


def test_a_class_never_predicted_is_named():
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(6):
        label = rng.integers(0, 5, (16, 16))
        prediction = np.where(label == 3, 1, label)  # class 3 always taken for class 1
        pairs.append((prediction, label))
    names = ["road", "car", "sky", "truck", "tree"]
    found = {f.check: f.line for f in run_checks(_evidence(pairs), names, "cityscapes")}
    assert set(found) == {"never-predicted"} and found["never-predicted"].startswith("truck (")


def test_clean_synthetic_evidence_fires_nothing():
    rng = np.random.default_rng(1)
    pairs = []
    for _ in range(8):
        label = rng.integers(0, 5, (16, 16))
        prediction = np.where(rng.random(label.shape) < 0.15, rng.integers(0, 5, label.shape), label)
        pairs.append((prediction, label))
    assert run_checks(_evidence(pairs), list("abcde"), "voc") == []


def test_explain_text_fits_80_columns_in_a_pipe(ade, tmp_path):
    planted_run(tmp_path, "ade20k", ade, "double-reduction")
    out = CliRunner().invoke(app, ["explain", ADE, "--results", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "Per-class IoU, worst first" in out.output and "Top confusions" in out.output
    assert "Worst images by per-image mIoU" in out.output and "ADE_val_" in out.output
    assert "documented 44.39" in out.output
    long = [line for line in out.output.splitlines() if len(line) > 80 and str(tmp_path) not in line]
    assert long == []
    assert "\x1b[" not in out.output  # no colour codes in a pipe


def test_result_without_evidence_says_what_is_missing(ade, tmp_path):
    path = planted_run(tmp_path, "ade20k", ade)
    data = json.loads(path.read_text())
    data["evidence"] = data["evidence_sha256"] = None
    path.write_text(json.dumps(data))
    out = CliRunner().invoke(app, ["explain", str(path)])
    assert out.exit_code == 0, out.output
    assert "no per-image evidence" in out.output
    assert f"repro eval {ADE} --protocol single --force" in out.output
    assert "Per-class IoU, worst first" in out.output  # from the JSON's per-class numbers
    # the command it names is one `repro eval` accepts (a usage error would exit 2)
    planned = CliRunner().invoke(app, ["eval", ADE, "--protocol", "single", "--force", "--dry-run",
                                       "--results", str(tmp_path / "planned")])
    assert planned.exit_code != 2, planned.output


def test_evidence_with_another_sha256_is_refused_in_one_line(ade, tmp_path):
    path = planted_run(tmp_path, "ade20k", ade)
    data = json.loads(path.read_text())
    data["evidence_sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    out = CliRunner().invoke(app, ["explain", str(path)])
    assert out.exit_code == 1
    assert out.output.strip().count("\n") == 0 and "does not match its result" in out.output


def test_unknown_row_and_missing_result_are_one_line(tmp_path):
    out = CliRunner().invoke(app, ["explain", "no_such_model", "--results", str(tmp_path)])
    assert out.exit_code == 2 and out.output.strip().startswith("error:")
    out = CliRunner().invoke(app, ["explain", ADE, "--results", str(tmp_path)])
    assert out.exit_code == 1 and f"repro eval {ADE}" in out.output


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()
        return image.size


def test_pictures_from_saved_predictions(ade, tmp_path):
    planted_run(tmp_path / "results", "ade20k", ade, "double-reduction")
    out = CliRunner().invoke(app, ["explain", ADE, "--results", str(tmp_path / "results"),
                                   "--output", str(tmp_path / "pics"), "--images", "2"])
    assert out.exit_code == 0, out.output
    pictures = sorted(p.relative_to(tmp_path / "pics").as_posix() for p in (tmp_path / "pics").rglob("*.png"))
    assert pictures[:2] == ["class_iou.png", "confusion.png"] and len(pictures) == 4
    assert all(name in out.output for name in pictures)
    width, height = _png_size(tmp_path / "pics" / pictures[2])
    assert width > 2.5 * height  # four panels side by side


def test_ignored_pixels_have_a_colour_no_palette_uses():
    """Issue 25 #6: ignored and background were both black in LIP, VOC and Pascal-Context. The
    ignore colour is used by no dataset palette nor the generated colours, and is far from each."""
    from repro.datasets import DATASETS
    from repro.datasets.registry import palette
    from repro.explain.draw import ERROR_RGB, IGNORE_RGB, class_colours

    used = np.concatenate([palette(name) for name in DATASETS] + [class_colours(300)]).astype(float)
    assert tuple(IGNORE_RGB) not in {tuple(c) for c in used.astype(int).tolist()}
    for name in ("lip", "voc", "pascalcontext59"):
        assert tuple(palette(name)[0]) == (0, 0, 0)  # their published background: why black cannot mean ignored
    assert np.sqrt(((used - IGNORE_RGB) ** 2).sum(axis=1)).min() >= 70
    assert np.linalg.norm(np.subtract(IGNORE_RGB, ERROR_RGB)) >= 70
    greys = np.repeat(np.arange(100, 190)[:, None], 3, axis=1)  # the errors panel's dimmed image
    assert np.sqrt(((greys - IGNORE_RGB) ** 2).sum(axis=1)).min() >= 70


@pytest.mark.parametrize("dataset", ["lip", "voc", "pascalcontext59", "ade20k", "cityscapes"])
def test_ignored_pixels_are_the_same_colour_in_every_panel_and_the_legend(dataset, tmp_path, monkeypatch):
    from repro.datasets import DATASETS
    from repro.explain.draw import IGNORE_RGB, dataset_colours, draw_image_panel, error_map, paint

    label = np.zeros((6, 8), dtype=np.int64)  # class 0: the background of LIP, VOC, Pascal-Context
    label[2:4, 2:6] = 3
    label[0, :] = -1
    prediction = np.where(label < 0, 0, label)
    prediction[3, 3] = 1
    colours = dataset_colours(dataset, DATASETS[dataset].num_classes)
    painted, errors = paint(label, colours), error_map(np.zeros((6, 8, 3), np.uint8), label, prediction)
    assert (painted[0] == IGNORE_RGB).all() and (errors[0] == IGNORE_RGB).all()
    assert not (painted[1:] == IGNORE_RGB).all(axis=-1).any()  # background and classes keep their colours
    assert not (errors[1:] == IGNORE_RGB).all(axis=-1).any()
    import matplotlib.figure

    seen, original = [], matplotlib.figure.Figure.legend
    monkeypatch.setattr(matplotlib.figure.Figure, "legend",
                        lambda fig, handles, **kw: seen.extend(handles) or original(fig, handles=handles, **kw))
    draw_image_panel(tmp_path / "panel.png", np.zeros((6, 8, 3), np.uint8), label, prediction,
                     list(DATASETS[dataset].class_names), "t", colours)
    legend = {h.get_label(): tuple(round(255 * v) for v in h.get_facecolor()[:3]) for h in seen}
    assert legend["ignored (not counted)"] == tuple(IGNORE_RGB)
    assert legend["wrong (errors panel)"] == (230, 30, 30)


def test_no_predictions_and_no_checkpoint_names_the_command(ade, tmp_path):
    planted_run(tmp_path / "results", "ade20k", ade, predictions=False)
    out = CliRunner().invoke(app, ["explain", ADE, "--results", str(tmp_path / "results"),
                                   "--output", str(tmp_path / "pics")])
    assert out.exit_code == 0, out.output
    assert "--save-predictions DIR" in out.output
    assert (tmp_path / "pics" / "confusion.png").is_file() and not (tmp_path / "pics" / "images").exists()


def test_server_run_is_explained_without_checks(cityscapes, tmp_path):
    path = planted_run(tmp_path, "cityscapes", cityscapes, predictions=False)
    builder = EvidenceBuilder(19, labelled=False)
    builder.add("berlin/berlin_000000_000019_leftImg8bit", np.zeros((4, 4), dtype=np.int64), None)
    data = json.loads(path.read_text())
    data.update(status="server", split="test", miou=None, miou_rounded=None, aacc=None, macc=None,
                per_class_iou={}, evidence_sha256=builder.build().save(tmp_path / data["evidence"]))
    path.write_text(json.dumps(data))
    out = CliRunner().invoke(app, ["explain", str(path), "--output", str(tmp_path / "pics")])
    assert out.exit_code == 0, out.output
    assert "no mIoU (server run)" in out.output and "a server run has no labels" in out.output
    assert "Likely causes" not in out.output


def test_a_partial_run_says_its_coverage_as_status_and_report_do(ade, tmp_path):
    """Issue 25 #3: explain said "partial: 3/3 images" where status, report and eval say
    "3/10000 images (subset of the dataset)": one rule, repro.results.current.partial_note."""
    from repro.results.current import partial_note
    from repro.results.files import read_result

    path = planted_run(tmp_path, "ade20k", ade, predictions=False)
    data = json.loads(path.read_text())
    data.update(status="partial", partial_reason="subset", num_images_official=2000)
    path.write_text(json.dumps(data))
    n = data["num_images"]
    note = partial_note(read_result(path))
    assert note == f"{n}/2000 images (subset of the dataset)"
    out = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["explain", str(path)])
    assert out.exit_code == 0, out.output
    assert f"partial: {note}, never compared" in out.output and f"{n}/{n} images" not in out.output


# ---------------------------------------------------------------------------------------------
# End to end: the real engine writes the evidence (a network that reads classes from colours)


def _engine_run(folder: Path, out: Path) -> Path:
    from explain_support import engine_run

    return engine_run("ade20k", folder, out)


def test_engine_run_is_explained_and_its_evidence_reproduces_the_number(tmp_path):
    folder = make_scene_dataset("ade20k", tmp_path / "data", n=8)
    explanation = explain_result(_engine_run(folder, tmp_path / "results"))
    evidence = explanation.evidence
    assert evidence is not None and evidence.totals_match() and evidence.ignored is not None
    assert 100 * evidence.miou() == explanation.result.miou  # exactly: one definition of mIoU
    assert explanation.findings == [] and len(explanation.worst_images) == 8


def test_engine_run_with_a_corrupted_label_names_it(tmp_path):
    folder = make_scene_dataset("ade20k", tmp_path / "data", n=8)
    bad_id = corrupt_label("ade20k", folder, 2)
    found = {f.check: f.line for f in explain_result(_engine_run(folder, tmp_path / "results")).findings}
    assert set(found) == {"few-images"} and bad_id in found["few-images"]


def test_pictures_recomputed_from_the_recorded_checkpoint(ade, tmp_path, monkeypatch):
    """No saved predictions: the checkpoint, when it still has the recorded sha256, is run again
    on the images drawn (the network is swapped for the colour reader; the flow is the real one)."""
    import hashlib

    import repro.models
    from explain_support import ColourModel

    from repro.manifest import Protocol

    checkpoint = tmp_path / "weights.pth"
    checkpoint.write_bytes(b"weights")
    path = planted_run(tmp_path / "results", "ade20k", ade, predictions=False, precision="tf32",
                       device="NVIDIA H100 80GB HBM3")
    data = json.loads(path.read_text())
    data.update(checkpoint=str(checkpoint), checkpoint_sha256=hashlib.sha256(b"weights").hexdigest())
    path.write_text(json.dumps(data))
    loaded = []

    def load_segmentor(model_id, source, variant=None, **kwargs):
        loaded.append(source)
        return ColourModel("ade20k", Protocol.model_validate(data["settings"]), 150)

    monkeypatch.setattr(repro.models, "load_segmentor", load_segmentor)
    out = CliRunner().invoke(app, ["explain", str(path), "--output", str(tmp_path / "pics"), "--images", "1"])
    assert out.exit_code == 0, out.output
    assert loaded == [str(checkpoint)] and len(list((tmp_path / "pics" / "images").glob("*.png"))) == 1
    # Issue 25 #5: the page says the pictures are not the run's arithmetic, and how far they agree
    # with its recorded counts (the planted run's predictions are not the colour reader's)
    said = " ".join(out.output.split())
    assert ("the predictions pictured were recomputed in fp32 on the CPU (upstream-exact resize), not in "
            "the run's arithmetic (tf32 on NVIDIA H100 80GB HBM3); against the run's per-image counts: "
            "0 of 1 image gives exactly the recorded counts; at least ") in said
    assert "recomputed in fp32 on the CPU" in (tmp_path / "pics" / "index.html").read_text()

    checkpoint.write_bytes(b"other weights")
    out = CliRunner().invoke(app, ["explain", str(path), "--output", str(tmp_path / "pics2")])
    assert f"its checkpoint {checkpoint} changed since the run" in " ".join(out.output.split())
    assert not (tmp_path / "pics2" / "images").exists()


def test_agreement_of_recomputed_predictions_with_the_recorded_counts():
    """Counts tell exactly-equal predictions apart, and bound the pixels predicted otherwise."""
    from repro.explain.predictions import Agreement, recorded_row
    from repro.metrics import image_confusion

    label = np.array([[0, 0, 1, 1], [2, 2, -1, 1]])
    recorded = np.array([[0, 0, 1, 1], [2, 1, 0, 1]])
    evidence = _evidence([(recorded, label)], num_classes=3)
    row = recorded_row(evidence, "img00")
    assert recorded_row(evidence, "no such image") is None
    agreement = Agreement()
    agreement.add(row, image_confusion(recorded, label, 3).numpy())
    assert (agreement.images, agreement.identical, agreement.differing) == (1, 1, 0)
    assert agreement.text() == "1 of 1 image gives exactly the recorded counts"
    other = recorded.copy()
    other[0, :2] = 1  # two pixels of class 0 now class 1, and the ignored pixel (not counted)
    other[1, 2] = 2
    agreement.add(row, image_confusion(other, label, 3).numpy())
    assert (agreement.images, agreement.identical, agreement.differing, agreement.counted) == (2, 1, 2, 14)
    assert agreement.text() == ("1 of 2 images give exactly the recorded counts; at least 2 of 14 pixels "
                                "(14.29%) predicted otherwise")


def test_a_label_of_another_size_is_refused_by_the_engine_in_one_line(tmp_path):
    """The size check of the issue's list: the engine refuses the run, so no result needs explaining."""
    from explain_support import engine_run

    from repro.datasets import open_dataset
    from repro.errors import DatasetError

    folder = make_scene_dataset("ade20k", tmp_path / "data", n=6)
    data = open_dataset("ade20k", folder, "val")
    Image.fromarray(np.ones((30, 50), dtype=np.uint8)).save(data.label_path(3))
    with pytest.raises(DatasetError) as err:
        engine_run("ade20k", folder, tmp_path / "results")
    assert "labels must have the size of their image" in str(err.value) and "\n" not in str(err.value)
    assert not list((tmp_path / "results").glob("*.json"))


def test_what_differs_from_how_the_documented_number_was_measured():
    from types import SimpleNamespace

    from repro.explain.explanation import documented_condition_notes
    from repro.manifest import load_manifest

    entry = load_manifest().get("memorynetv2_upernet_resnet50os8_voc")  # A100, TF32 convolutions likely
    run = SimpleNamespace(protocol="single", precision="fp32", device="cuda:0 (NVIDIA H200)")
    notes = documented_condition_notes(entry, run)
    assert notes[0] == "documented number measured on: GPU A100, TF32 conv likely, matmul unknown"
    assert any("TF32 convolutions: likely" in n and "`--precision tf32`" in n for n in notes)
    assert "GPU: A100 for the documented number, cuda:0 (NVIDIA H200) here" in notes
    tf32_on_a100 = SimpleNamespace(protocol="single", precision="tf32", device="cuda:0 (NVIDIA A100-SXM4-80GB)")
    assert documented_condition_notes(entry, tf32_on_a100) == notes[:1]
    no_record = SimpleNamespace(documented_conditions={})
    assert "not recorded" in documented_condition_notes(no_record, run)[0]


def test_html_report_links_every_measured_row_to_its_explain_page(ade, tmp_path):
    import re

    planted_run(tmp_path / "results", "ade20k", ade, "double-reduction")
    old = planted_run(tmp_path / "results", "ade20k", ade, protocol="ms+flip", predictions=False)
    data = json.loads(old.read_text())
    data["evidence"] = data["evidence_sha256"] = None
    old.write_text(json.dumps(data))
    out = CliRunner().invoke(app, ["report", "--format", "html", "--results", str(tmp_path / "results")])
    page = out.stdout
    links = re.findall(r'<a href="#(explain-[^"]+)">', page)
    assert sorted(links) == [f"explain-{ADE}-ms-flip", f"explain-{ADE}-single"]
    assert all(f'<section class="explain" id="{link}">' in page for link in links)
    assert page.count('src="data:image/png;base64,') == 4  # IoU bars, heatmap, two worst images
    assert "zero-label reduction applied twice" in page and "no per-image evidence" in page
    assert "<script" not in page and 'src="http' not in page  # self-contained


def test_engine_runs_with_saved_predictions_explained_and_diffed(tmp_path):
    """Through the real engine: saved prediction PNGs (the dataset's own numbering) read back as
    classes for the pictures, and `repro diff` of a run on a broken and on an intact copy."""
    from explain_support import engine_run

    from repro.explain.diff import diff_results
    from repro.explain.predictions import PredictionSource

    broken = make_scene_dataset("ade20k", tmp_path / "broken", n=8)
    bad_id = corrupt_label("ade20k", broken, 2)
    intact = make_scene_dataset("ade20k", tmp_path / "intact", n=8)
    a = engine_run("ade20k", broken, tmp_path / "a", save_predictions=tmp_path / "pred-a")
    b = engine_run("ade20k", intact, tmp_path / "b", save_predictions=tmp_path / "pred-b")
    x = explain_result(b)
    source = PredictionSource.for_result(b, x.result)
    assert source.kind == "saved predictions"
    _, label, prediction = source.images(x.worst_images[0].image_id)
    counted = label >= 0
    assert (prediction[counted] == label[counted]).mean() > 0.98  # the PNG's +1 numbering read back
    d = diff_results(a, b)
    assert d.agreement == 1.0 and d.agreement_images == 8  # same network, same images
    assert [w for w, _, _ in d.conditions] == ["dataset fingerprint", "dataset folder"]
    assert d.images[0].image_id == bad_id and d.images[0].delta > 50


def test_predictions_another_run_wrote_over_are_not_pictured_as_this_results(tmp_path):
    """A later run (another dataset copy) wrote its PNGs into the folder a result names: the
    folder's owner record no longer matches, so the pictures are recomputed and the note says why."""
    from explain_support import engine_run

    from repro.explain.predictions import PredictionSource

    broken = make_scene_dataset("ade20k", tmp_path / "broken", n=4)
    corrupt_label("ade20k", broken, 1)
    intact = make_scene_dataset("ade20k", tmp_path / "intact", n=4)
    first = engine_run("ade20k", broken, tmp_path / "a", save_predictions=tmp_path / "pred")
    result = explain_result(first).result
    assert PredictionSource.for_result(first, result).kind == "saved predictions"
    engine_run("ade20k", intact, tmp_path / "b", save_predictions=tmp_path / "pred", force=True)
    source = PredictionSource.for_result(first, result)
    assert source.folder is None and source.kind != "saved predictions"
    assert f"the saved predictions in {tmp_path / 'pred'} are not this result's" in (source.not_saved or "")
    # the run's network was given as is (no checkpoint file to run again): no pictures, and why
    assert source.problem.startswith(f"no image pictures: {source.not_saved} and the run recorded no checkpoint")


def test_saved_predictions_are_found_under_the_names_of_their_label_files(tmp_path):
    """Cityscapes predictions are saved as <city>/<name>_gtFine_labelIds.png, beside nothing but
    the ground truth's own names: the pictures and `repro diff` find them there."""
    from explain_support import engine_run

    from repro.explain.diff import diff_results
    from repro.explain.predictions import PredictionSource

    city = make_scene_dataset("cityscapes", tmp_path / "city", n=4)
    a = engine_run("cityscapes", city, tmp_path / "a", save_predictions=tmp_path / "pred-a")
    b = engine_run("cityscapes", city, tmp_path / "b", save_predictions=tmp_path / "pred-b")
    labels = sorted(p.relative_to(city / "gtFine" / "val") for p in (city / "gtFine" / "val").rglob("*.png"))
    assert sorted(p.relative_to(tmp_path / "pred-b") for p in (tmp_path / "pred-b").rglob("*.png")) == labels
    x = explain_result(b)
    source = PredictionSource.for_result(b, x.result)
    assert source.kind == "saved predictions"
    _, label, prediction = source.images(x.worst_images[0].image_id)
    counted = label >= 0
    assert (prediction[counted] == label[counted]).mean() > 0.98  # labelIds read back as trainIds
    d = diff_results(a, b)
    assert d.agreement == 1.0 and d.agreement_images == 4
    for saved in (tmp_path / "pred-b").rglob("*_gtFine_labelIds.png"):  # a folder saved before (<id>.png)
        saved.rename(saved.with_name(saved.name.replace("_gtFine_labelIds", "_leftImg8bit")))
    _, _, earlier = PredictionSource.for_result(b, x.result).images(x.worst_images[0].image_id)
    assert np.array_equal(earlier, prediction)
