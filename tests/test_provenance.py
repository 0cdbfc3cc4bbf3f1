"""The arithmetic behind each documented number: manifest schema, the generator, `repro info`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from repro.errors import ManifestError
from repro.manifest import DEFAULT_PATH, load_manifest, parse_manifest

ROOT = Path(__file__).parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="module")
def manifest():
    return load_manifest()


def _numbers(manifest):
    """(row, where, protocol, number, conditions) of every documented and upstream_now number."""
    for e in manifest.entries:
        for p, v in e.documented.items():
            if v is not None:
                yield e, "documented", p, v, e.documented_conditions.get(p)
        if e.upstream_now is not None:
            for p, v in e.upstream_now.documented.items():
                if v is not None:
                    yield e, "upstream_now", p, v, e.upstream_now.conditions.get(p)


def test_every_number_carries_its_conditions_with_evidence(manifest):
    found = list(_numbers(manifest))
    assert sum(1 for _, where, *_ in found if where == "documented") == 68
    # 68 printed in the documents + 17 blank cells upstream filled: the 85 documented numbers
    filled = [(e.id, p) for e, where, p, _, _ in found if where == "upstream_now" and e.documented.get(p) is None]
    assert len(filled) == 17
    for e, where, p, number, conditions in found:
        assert conditions is not None, (e.id, where, p)
        first = conditions.evidence[0]
        assert float(first.quote.rstrip("%")) == number  # the number's own commit comes first
        assert any(f.commit == "f2650a08" for f in conditions.evidence)


def _conditions(manifest, model_id, where="documented"):
    entry = manifest.get(model_id)
    return entry.documented_conditions if where == "documented" else entry.upstream_now.conditions


def test_mcibiplusplus_2022_numbers_are_a100_with_default_tf32_convolutions(manifest):
    found = _conditions(manifest, "memorynetv2_aspp_hrnetv2w48_lip")["single"]
    assert (found.gpu, found.tf32_conv, found.tf32_matmul) == ("A100", "likely", "unknown")
    assert found.evidence[0].date.startswith("2022-09")
    assert any(f.commit == "fb8e555f" and "evaluated on A100" in f.quote for f in found.evidence)


def test_numbers_printed_after_tf32_was_turned_off_are_fp32(manifest):
    # COCOStuff ms+flip re-scored with upstream's new TTA block (a35c5ee6, 2023-11-22)
    found = _conditions(manifest, "mcibi_deeplabv3_r50_cocostuff10k")
    assert (found["ms+flip"].tf32_conv, found["ms+flip"].tf32_matmul) == ("no", "no")
    assert found["ms+flip"].evidence[0].commit == "a35c5ee6"
    # while its single-scale number dates from 2021 and no GPU is named
    assert (found["single"].gpu, found["single"].tf32_conv) == ("unknown", "unknown")
    assert found["single"].evidence[0].date == "2021-09-06"
    now = _conditions(manifest, "memorynetv2_aspp_hrnetv2w48_lip", "upstream_now")
    assert {p: c.tf32_conv for p, c in now.items()} == {"single": "no", "flip": "no", "ms+flip": "no"}
    vitl = _conditions(manifest, "mcibi_deeplabv3_vitlarge_ade20k", "upstream_now")
    assert vitl["ms+flip"].evidence[0].commit == "9e983890" and vitl["ms+flip"].tf32_conv == "no"


def test_a_docs_only_change_after_f2650a08_is_unknown(manifest):
    now = _conditions(manifest, "memorynetv2_upernet_resnest101os8_lip", "upstream_now")
    assert (now["single"].tf32_conv, now["single"].evidence[0].commit) == ("unknown", "63d3bf81")
    assert now["flip"].tf32_conv == "likely"  # unchanged since 2022


def test_old_manifest_without_conditions_still_loads():
    raw = yaml.safe_load(DEFAULT_PATH.read_text())
    for e in raw["models"]:
        e.pop("documented_conditions", None)
        if e.get("upstream_now"):
            e["upstream_now"].pop("conditions", None)
    loaded = parse_manifest(yaml.safe_dump(raw))
    assert loaded.entries[0].documented_conditions == {}


def _raw_error(mutate) -> str:
    raw = yaml.safe_load(DEFAULT_PATH.read_text())
    mutate(raw["models"][5])  # mcibi_deeplabv3_r50_ade20k: documented single + ms+flip, an upstream_now
    with pytest.raises(ManifestError) as caught:
        parse_manifest(yaml.safe_dump(raw), source="zoo.yaml")
    assert "\n" not in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda e: e["documented_conditions"]["single"].update(tf32_conv="maybe"), "documented_conditions.single.tf32_conv"),
        (lambda e: e["documented_conditions"].pop("single"), "must cover the protocols with a number"),
        (lambda e: e["documented_conditions"].update(flip=e["documented_conditions"]["single"]), "must cover"),
        (lambda e: e["documented_conditions"]["single"].update(evidence=[]), "at least 1 item"),
        (lambda e: e["documented_conditions"]["single"]["evidence"][0].update(date="2021-02-30"), "is not a date"),
        (lambda e: e["documented_conditions"]["single"]["evidence"][0].update(commit="HEAD"), "should match pattern"),
        (lambda e: e["upstream_now"]["conditions"].pop("ms+flip"), "upstream_now.conditions must cover"),
    ],
)
def test_bad_conditions_are_rejected_in_one_line(mutate, words):
    assert words in _raw_error(mutate)


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.dev  # upstream's documents are upstream's text: they stay in ../shared, not in the project
@pytest.mark.skipif(not (SHARED / "seeds").is_dir(),
                    reason="development check: needs ../shared/seeds (upstream's model-zoo documents)")
def test_make_manifest_regenerates_the_bundled_yaml(tmp_path):
    """Development check (`pytest -m dev`, beside a ../shared checkout): tools/make_manifest.py
    rebuilds repro/model_zoo.yaml byte for byte from the documents and upstream's configs."""
    tool = _load_tool("make_manifest")
    out = tmp_path / "zoo.yaml"
    tool.main(str(SHARED / "seeds"), str(SHARED / "reference" / "upstream_protocols.json"), str(out))
    assert out.read_text() == DEFAULT_PATH.read_text()


def test_number_conditions_rules():
    tool = _load_tool("make_manifest")
    origin = {"cell": "50.00%", "commit": "1234567", "date": "2022-09-10", "file": "README.md", "after_tf32_off": False}
    assert tool.number_conditions("memorynetv2", origin)["tf32_conv"] == "likely"
    assert tool.number_conditions("mcibi", origin)["gpu"] == "unknown"
    assert tool.number_conditions("mcibi", {**origin, "after_tf32_off": True})["tf32_matmul"] == "no"
    assert tool.number_conditions("mcibi", {**origin, "commit": "63d3bf81", "after_tf32_off": True})["tf32_conv"] == "unknown"


def test_number_origins_render_round_trips():
    tool = _load_tool("number_origins")
    origins = json.loads((ROOT / "tools" / "number_origins.json").read_text())
    assert json.loads(tool.render(origins)) == origins
    assert tool.render(origins) == (ROOT / "tools" / "number_origins.json").read_text()


def test_number_origins_reads_table_cells():
    tool = _load_tool("number_origins")
    text = ("#### ADE20k\n| Segmentor | Backbone | mIoU/mIoU (ms+flip) | Download |\n| :-: | :-: | :-: | :-: |\n"
            "| DeepLabV3 | R-50-D8 | 44.39%/45.95% | x |\n## CityScapes\n| Model | Backbone | mIoU (ms+flip) |\n"
            "| :-: | :-: | :-: |\n| DeepLabV3 | R-50-D8 | 79.90% |\n")
    assert tool.cells(text) == {("ADE20k", "DeepLabV3", "R-50-D8"): {"single": "44.39%", "ms+flip": "45.95%"},
                                ("CityScapes", "DeepLabV3", "R-50-D8"): {"ms+flip": "79.90%"}}


def test_info_shows_the_conditions_in_text_and_json():
    from repro.cli import app

    runner = CliRunner(env={"COLUMNS": "80"})
    out = runner.invoke(app, ["info", "mcibi_deeplabv3_r50_cocostuff10k"]).output
    assert "arithmetic behind the numbers" in out
    assert "ms+flip 39.78: GPU unknown, TF32 conv no, matmul no" in out
    assert 'f2650a08 2023-05-29 ssseg/test.py: "disable tf32"' in out
    section = out[out.index("arithmetic behind"):out.index("test protocols")]
    assert max(len(line) for line in section.splitlines()) <= 80
    data = json.loads(runner.invoke(app, ["info", "memorynetv2_aspp_hrnetv2w48_lip", "--format", "json"]).output)
    assert data["documented_conditions"]["single"]["tf32_conv"] == "likely"
    assert data["upstream_now"]["conditions"]["ms+flip"]["evidence"][0]["commit"] == "a476d4cc"
