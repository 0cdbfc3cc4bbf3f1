"""The manifest against the two model-zoo documents and upstream's config facts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from repro.errors import ManifestError, UnknownModelError
from repro.manifest import DEFAULT_PATH, load_manifest, parse_manifest

FIXTURES = Path(__file__).parent / "fixtures"
UPSTREAM = json.loads((FIXTURES / "upstream_protocols.json").read_text())


@pytest.fixture(scope="module")
def manifest():
    return load_manifest()


def test_one_entry_per_documented_row(manifest):
    methods = Counter(e.method for e in manifest.entries)
    assert methods == {"mcibi": 18, "memorynetv2": 36}
    per_table = Counter((e.method, e.table) for e in manifest.entries)
    assert per_table == {
        ("mcibi", "COCOStuff-10k"): 5, ("mcibi", "ADE20k"): 5, ("mcibi", "CityScapes"): 4, ("mcibi", "LIP"): 4,
        ("memorynetv2", "LIP"): 8, ("memorynetv2", "ADE20k"): 7, ("memorynetv2", "CityScapes"): 7,
        ("memorynetv2", "COCOStuff-10k"): 7, ("memorynetv2", "VSPW"): 2, ("memorynetv2", "PASCAL-VOC"): 2,
        ("memorynetv2", "PASCAL-Context"): 3,
    }
    assert sum(e.section == "Results of Different Frameworks" for e in manifest.entries) == 16


@pytest.mark.parametrize(
    "model_id, documented",
    [
        ("mcibi_deeplabv3_r50_ade20k", {"single": 44.39, "ms+flip": 45.95}),
        ("mcibi_deeplabv3_vitlarge_cocostuff10k", {"single": 44.27, "ms+flip": 45.50}),
        ("mcibi_deeplabv3_hrnetv2w48_cityscapes", {"ms+flip": 82.55}),
        ("mcibi_deeplabv3_s101_lip", {"single": 56.21, "flip": 56.34}),
        ("memorynetv2_upernet_swinlarge_lip", {"single": 59.58, "flip": 59.89, "ms+flip": 59.91}),
        ("memorynetv2_upernet_resnet50os8_voc", {"single": 79.48}),
        ("memorynetv2_upernet_swinlarge_pascalcontext59", {"single": 62.37, "ms+flip": 64.01}),
        ("memorynetv2_aspp_resnest101os8_cityscapes", {"ms+flip": 81.70}),
        ("memorynetv2_upernet_swinlarge_vspw", {"single": 56.04}),
        ("memorynetv2_upernet_resnet101os8_cocostuff10k", {"single": 40.41, "ms+flip": 41.84}),
        ("memorynetv2_aspp_hrnetv2w48_lip", {"single": 56.70, "flip": 57.27, "ms+flip": 57.42}),
    ],
)
def test_documented_numbers(manifest, model_id, documented):
    assert manifest.get(model_id).documented == documented


def test_blank_cells_are_null(manifest):
    framework = [e for e in manifest.entries if e.section == "Results of Different Frameworks"]
    assert all(e.documented == {"single": None} for e in framework)
    assert manifest.get("memorynetv2_aspp_resnet101os8_cityscapes").documented == {"ms+flip": None}


def test_ids_and_aliases(manifest):
    ids = manifest.ids()
    assert len(set(ids)) == len(ids) == 54
    assert "mcibi_deeplabv3_r50_ade20k" in ids
    # upstream config names and the later mcibiplusplus_ checkpoint stems are aliases
    assert manifest.get("mcibi_deeplabv3_resnet50os8_ade20k").id == "mcibi_deeplabv3_r50_ade20k"
    assert manifest.get("mcibiplusplus_upernet_swinlarge_ade20k").id == "memorynetv2_upernet_swinlarge_ade20k"
    assert manifest.get("mcibiplusplus_resnet50os8_lip").id == "memorynetv2_fcn_resnet50os8_lip"
    # the VSPW stem belongs to the VSPW row even though the COCO row links the same file
    assert manifest.get("memorynetv2_upernet_swinlarge_vspw").dataset == "vspw"
    assert manifest.get("memorynetv2_upernet_swinlarge_cocostuff10k").dataset == "cocostuff10k"


def test_unknown_id_suggests_close_matches(manifest):
    with pytest.raises(UnknownModelError) as err:
        manifest.get("mcibi_deeplabv3_r50_ade2k")
    assert err.value.exit_code == 2
    assert "did you mean mcibi_deeplabv3_r50_ade20k" in str(err.value)


def test_rows_match_upstream_configs(manifest):
    for e in manifest.entries:
        facts = UPSTREAM[e.upstream_config]
        assert e.num_classes == facts["num_classes"], e.id
        assert e.eval_split == facts["test_set"], e.id
        assert e.upstream_config.startswith("mcibi_" if e.method == "mcibi" else "mcibiplusplus_"), e.id
        assert e.eval == ("server" if e.eval_split == "test" and e.dataset == "cityscapes" else "local"), e.id


def _settings(block, pairs):
    """The upstream block in the manifest's shape, computed here independently of the generator."""
    fwd, tta = block["inference"]["forward"], block["inference"]["tta"]
    resize = dict(block["test_pipeline"])["Resize"]
    norm = dict(block["test_pipeline"])["Normalize"]
    return {
        "upstream_block": block["label"],
        "resize": {"output_size": resize["output_size"], "keep_ratio": resize["keep_ratio"]},
        "normalize": {"mean": norm["mean"], "std": norm["std"]},
        "mode": fwd["mode"], "crop_size": fwd["cropsize"], "stride": fwd["stride"],
        "scales": [float(s) for s in tta["multiscale"]], "flip": tta["flip"],
        "flip_pairs": pairs or [], "probs_before_resize": tta["use_probs_before_resize"],
    }


def test_protocols_are_upstream_blocks(manifest):
    expected_block = {"single": "default", "flip": "single-scale with flipping"}
    for e in manifest.entries:
        facts = UPSTREAM[e.upstream_config]
        blocks = {b["label"]: b for b in facts["protocols"]}
        default = blocks["default"]["inference"]["tta"]
        active_single = default["multiscale"] == [1] and not default["flip"]
        wanted = set(e.documented) | ({"single"} if active_single else set())
        assert set(e.protocols) == wanted, e.id
        for name, proto in e.protocols.items():
            block = blocks[proto.upstream_block]
            assert proto.model_dump() == _settings(block, facts["flip_channel_pairs"]), (e.id, name)
            if name in expected_block and not (name == "single" and not active_single):
                assert proto.upstream_block == expected_block[name], (e.id, name)
            scales = block["inference"]["tta"]["multiscale"]
            assert (len(scales) > 1) == (name == "ms+flip"), (e.id, name)


def test_urls(manifest):
    e = manifest.get("memorynetv2_upernet_resnet101os8_vspw")
    assert e.weights == [
        "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_memorynetv2/memorynetv2_upernet_resnet101os8_vspw.pth",
        "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_mcibiplusplus/mcibiplusplus_upernet_resnet101os8_vspw.pth",
    ]
    blank = manifest.get("memorynetv2_upernet_resnet50os8_ade20k")
    assert blank.weights == [
        "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_mcibiplusplus/mcibiplusplus_upernet_resnet50os8_ade20k.pth"
    ]
    assert all(e.weights and e.config and e.log and e.sha256 is None for e in manifest.entries)


def test_known_defects_are_noted(manifest):
    coco_swin = manifest.get("memorynetv2_upernet_swinlarge_cocostuff10k")
    assert coco_swin.weights[0].endswith("memorynetv2_upernet_swinlarge_vspw.pth")
    assert any("VSPW checkpoint" in n for n in coco_swin.notes)
    assert any("log link" in n for n in manifest.get("memorynetv2_upernet_resnet101os8_voc").notes)
    assert any("473x473" in n for n in manifest.get("memorynetv2_aspp_hrnetv2w48_lip").notes)


def test_top_level_manifest_is_the_packaged_one():
    top = Path(__file__).parents[1] / "model_zoo.yaml"
    assert top.resolve() == DEFAULT_PATH.resolve()


# -- validation -------------------------------------------------------------------------------

def _raw():
    return yaml.safe_load(DEFAULT_PATH.read_text())


def _error(raw) -> str:
    with pytest.raises(ManifestError) as err:
        parse_manifest(yaml.safe_dump(raw), source="zoo.yaml")
    message = str(err.value)
    assert "\n" not in message
    return message


def test_unknown_field_is_rejected():
    raw = _raw()
    raw["models"][3]["colour"] = "blue"
    assert _error(raw) == f"zoo.yaml: entry '{raw['models'][3]['id']}', field 'colour': Extra inputs are not permitted"


def test_wrong_type_is_rejected():
    raw = _raw()
    raw["models"][0]["num_classes"] = "many"
    message = _error(raw)
    assert "entry 'mcibi_deeplabv3_r50_cocostuff10k', field 'num_classes'" in message


def test_nested_field_is_named():
    raw = _raw()
    raw["models"][5]["protocols"]["single"]["mode"] = "tiled"
    assert "field 'protocols.single.mode'" in _error(raw)


def test_duplicate_id_is_rejected():
    raw = _raw()
    raw["models"][1]["id"] = raw["models"][0]["id"]
    assert "duplicate id or alias 'mcibi_deeplabv3_r50_cocostuff10k'" in _error(raw)


def test_protocol_without_settings_is_rejected():
    raw = _raw()
    del raw["models"][5]["protocols"]["ms+flip"]
    message = _error(raw)
    assert f"entry '{raw['models'][5]['id']}'" in message and "ms+flip" in message


def test_slide_without_window_is_rejected():
    raw = _raw()
    raw["models"][5]["protocols"]["single"]["mode"] = "slide"
    assert "slide inference needs crop_size and stride" in _error(raw)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "zoo.yaml"
    bad.write_text("models: [\n")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(bad)
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "missing.yaml")


def test_manifest_from_environment(tmp_path, monkeypatch):
    raw = _raw()
    raw["models"] = raw["models"][:2]
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("REPRO_MANIFEST", str(path))
    assert load_manifest().ids() == [m["id"] for m in raw["models"]]


# -- variants and upstream_now ----------------------------------------------------------------

TRAINING_ERA_ROWS = {  # HRNet checkpoints trained before upstream's stem gained a ReLU (4602275d)
    "mcibi_deeplabv3_hrnetv2w48_ade20k", "mcibi_deeplabv3_hrnetv2w48_cocostuff10k",
    "mcibi_deeplabv3_hrnetv2w48_lip", "memorynetv2_aspp_hrnetv2w48_lip",
}

# Upstream's current model-zoo tables where they differ from the documents, read off upstream's
# git history by hand: id -> (numbers, commit that set them, date).
_FILLED = "9293dd4d", "2022-09-10"  # the MemoryNetV2 cells the document leaves blank
UPSTREAM_NOW_VERIFIED = {
    "mcibi_deeplabv3_r50_ade20k": ({"single": 44.39, "ms+flip": 45.97}, "91c9d8c8", "2023-11-23"),
    "mcibi_deeplabv3_r101_ade20k": ({"single": 45.66, "ms+flip": 47.27}, "91c9d8c8", "2023-11-23"),
    "mcibi_deeplabv3_s101_ade20k": ({"single": 46.63, "ms+flip": 47.39}, "91c9d8c8", "2023-11-23"),
    "mcibi_deeplabv3_hrnetv2w48_ade20k": ({"single": 45.79, "ms+flip": 47.46}, "91c9d8c8", "2023-11-23"),
    "mcibi_deeplabv3_vitlarge_ade20k": ({"single": 50.08, "ms+flip": 51.63}, "9e983890", "2025-09-30"),
    "mcibi_deeplabv3_r50_cityscapes": ({"ms+flip": 79.97}, "ae25e4fd", "2024-10-19"),
    "mcibi_deeplabv3_r101_cityscapes": ({"ms+flip": 82.10}, "a0b82463", "2024-10-19"),
    "mcibi_deeplabv3_s101_cityscapes": ({"ms+flip": 81.51}, "03225b3d", "2024-10-21"),
    "mcibi_deeplabv3_hrnetv2w48_cityscapes": ({"ms+flip": 82.54}, "03225b3d", "2024-10-21"),
    "memorynetv2_fcn_resnet50os8_lip": ({"single": 51.13}, *_FILLED),
    "memorynetv2_ppm_resnet50os8_lip": ({"single": 52.93}, *_FILLED),
    "memorynetv2_upernet_resnet50os8_lip": ({"single": 53.92}, *_FILLED),
    "memorynetv2_aspp_resnet50os8_lip": ({"single": 53.59}, *_FILLED),
    "memorynetv2_fcn_resnet50os8_ade20k": ({"single": 43.39}, *_FILLED),
    "memorynetv2_ppm_resnet50os8_ade20k": ({"single": 43.88}, "3d26c8f5", "2022-09-11"),
    "memorynetv2_upernet_resnet50os8_ade20k": ({"single": 44.30}, *_FILLED),
    "memorynetv2_aspp_resnet50os8_ade20k": ({"single": 44.85}, *_FILLED),
    "memorynetv2_fcn_resnet50os8_cityscapes": ({"single": 78.77}, *_FILLED),
    "memorynetv2_ppm_resnet50os8_cityscapes": ({"single": 79.91}, *_FILLED),
    "memorynetv2_upernet_resnet50os8_cityscapes": ({"single": 80.05}, *_FILLED),
    "memorynetv2_aspp_resnet50os8_cityscapes": ({"single": 80.72}, *_FILLED),
    "memorynetv2_fcn_resnet50os8_cocostuff10k": ({"single": 37.38}, *_FILLED),
    "memorynetv2_ppm_resnet50os8_cocostuff10k": ({"single": 38.47}, *_FILLED),
    "memorynetv2_upernet_resnet50os8_cocostuff10k": ({"single": 39.20}, "63d3bf81", "2024-10-19"),
    "memorynetv2_aspp_resnet50os8_cocostuff10k": ({"single": 38.94}, *_FILLED),
    "memorynetv2_aspp_resnet101os8_cityscapes": ({"ms+flip": 82.20}, *_FILLED),
    "memorynetv2_upernet_resnest101os8_lip": ({"single": 56.57, "flip": 56.77, "ms+flip": 57.08}, "63d3bf81", "2024-10-19"),
    "memorynetv2_aspp_hrnetv2w48_lip": ({"single": 56.72, "flip": 57.30, "ms+flip": 57.55}, "a476d4cc", "2025-08-21"),
}


def test_variants(manifest):
    for e in manifest.entries:
        if e.id in TRAINING_ERA_ROWS:
            assert e.variants == ["training-era", "upstream-head"], e.id
            assert e.default_variant == "training-era"
            assert any("4602275d" in n and "mcibi_version" in n for n in e.notes), e.id
        else:
            assert e.variants == ["upstream-head"] and e.default_variant == "upstream-head", e.id
    assert manifest.get("mcibiplusplus_aspp_hrnetv2w48_lip").default_variant == "training-era"


def test_upstream_now_matches_upstream_history(manifest):
    recorded = {e.id: e.upstream_now for e in manifest.entries if e.upstream_now is not None}
    assert set(recorded) == set(UPSTREAM_NOW_VERIFIED)
    for model_id, (numbers, commit, date) in UPSTREAM_NOW_VERIFIED.items():
        now = recorded[model_id]
        assert (now.documented, now.commit, now.date) == (numbers, commit, date), model_id
        # the same columns as the document, and the document's numbers stay the reference
        assert list(now.documented) == list(manifest.get(model_id).documented), model_id
        assert now.note and now.note != "None"


def test_newer_protocol_blocks_are_explained(manifest):
    vit = manifest.get("mcibi_deeplabv3_vitlarge_ade20k")
    assert vit.documented == {"single": 49.73, "ms+flip": 50.99}
    assert "drop_rate 0.1 -> 0" in vit.upstream_now.note
    for model_id in ("mcibi_deeplabv3_r50_ade20k", "mcibi_deeplabv3_hrnetv2w48_cityscapes"):
        assert any("repro's ms+flip protocol is upstream's block" in n for n in manifest.get(model_id).notes)


def test_upstream_now_summary(manifest):
    line = manifest.get("mcibi_deeplabv3_vitlarge_ade20k").upstream_now.summary()
    assert line.startswith("50.08 / 51.63 (2025-09-30, 9e983890): re-scored after c99d1e5c")


def test_info_shows_variants_and_upstream_now():
    from typer.testing import CliRunner

    from repro.cli import app

    out = CliRunner(env={"COLUMNS": "400"}).invoke(app, ["info", "memorynetv2_aspp_hrnetv2w48_lip"]).output
    assert "training-era (default), upstream-head" in out
    assert "56.72 / 57.30 / 57.55 (2025-08-21, a476d4cc): re-scored" in out
    plain = CliRunner(env={"COLUMNS": "400"}).invoke(app, ["info", "mcibi_deeplabv3_r50_lip"]).output
    assert "upstream-head (default)" in plain
    assert "upstream now" not in plain and "upstream_now" not in plain


def _entry_error(mutate) -> str:
    raw = _raw()
    mutate(raw["models"][5])
    return _error(raw)


@pytest.mark.parametrize(
    "mutate, field, words",
    [
        (lambda e: e.update(variants=["era"]), "variants.0", "Input should be 'training-era' or 'upstream-head'"),
        (lambda e: e.update(variants=[]), "variants", "at least 1 item"),
        (lambda e: e.update(variants=["upstream-head", "upstream-head"]), "variants", "lists a variant twice"),
        (lambda e: e["upstream_now"].update(commit="HEAD"), "upstream_now.commit", "should match pattern"),
        (lambda e: e["upstream_now"].update(date="2025-13-01"), "upstream_now.date", "is not a date"),
        (lambda e: e["upstream_now"].update(date="30.09.2025"), "upstream_now.date", "should match pattern"),
        (lambda e: e["upstream_now"].update(note=""), "upstream_now.note", "at least 1 character"),
        (lambda e: e["upstream_now"].update(source="x"), "upstream_now.source", "Extra inputs"),
        (lambda e: e["upstream_now"].update(documented={}), "upstream_now.documented", "at least one protocol"),
        (lambda e: (e["upstream_now"]["documented"].update(flip=50.0), e["upstream_now"].pop("conditions")),
         "upstream_now", "flip have no settings"),
        (lambda e: e["upstream_now"].update(documented=dict(e["documented"])), "upstream_now", "repeats the documented"),
    ],
)
def test_bad_variants_and_upstream_now_are_rejected(mutate, field, words):
    # models[5] is mcibi_deeplabv3_r50_ade20k, which has an upstream_now
    message = _entry_error(mutate)
    assert f"entry 'mcibi_deeplabv3_r50_ade20k', field '{field}'" in message
    assert words in message


def test_variants_default_when_omitted():
    raw = _raw()
    del raw["models"][0]["variants"]
    assert parse_manifest(yaml.safe_dump(raw)).entries[0].variants == ["upstream-head"]
