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
