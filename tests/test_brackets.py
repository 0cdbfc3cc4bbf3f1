"""Precision brackets: which arithmetic a row is compared in, the others beside it, the spread."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest

from repro.results.brackets import (
    bracket, choose_precision, comparable, conditions_for, matching_precision, precision_note,
)
from repro.manifest import load_manifest


def _conditions(conv, matmul="unknown"):
    return SimpleNamespace(tf32_conv=conv, tf32_matmul=matmul)


@pytest.mark.parametrize(
    "conditions, expected",
    [(None, "fp32"), (_conditions("unknown"), "fp32"), (_conditions("no", "no"), "fp32"),
     (_conditions("likely"), "tf32"), (_conditions("yes", "no"), "tf32"),
     (_conditions("likely", "likely"), "tf32-all"), (_conditions("yes", "yes"), "tf32-all")],
)
def test_matching_precision(conditions, expected):
    assert matching_precision(conditions) == expected


def test_choice_falls_back_to_fp32_then_the_next_comparable():
    assert choose_precision(["fp32", "tf32"], _conditions("likely"))[0] == "tf32"
    assert choose_precision(["fp32", "tf32"], None) == ("fp32", "conditions unknown: fp32")
    assert choose_precision(["fp32"], _conditions("likely")) == ("fp32", "no tf32 result")
    assert choose_precision(["tf32-all", "tf32"], _conditions("no", "no"))[0] == "tf32"
    assert choose_precision(["bf16", "fp8"], None) is None


def test_bracket_of_an_a100_number_compares_tf32_and_shows_fp32_beside():
    found = bracket({"fp32": 80.21, "tf32": 80.12, "bf16": 79.0}, _conditions("likely"), "0.10")
    assert found.chosen == "tf32" and found.value == Decimal("80.12")
    assert found.others == (("fp32", Decimal("80.21")),)  # bf16 is never in a bracket
    assert found.spread == Decimal("0.09") and not found.exceeds_tolerance
    assert found.text() == "fp32 80.21 (+0.09); spread 0.09 <= 0.10"


def test_bracket_flags_a_spread_beyond_the_tolerance():
    found = bracket({"fp32": 50.00, "tf32": 50.30, "tf32-all": 49.95}, None, 0.1)
    assert found.chosen == "fp32"
    assert [p for p, _ in found.others] == ["tf32", "tf32-all"]
    assert found.spread == Decimal("0.35") and found.exceeds_tolerance
    assert "spread 0.35 > 0.1" in found.text()


def test_no_bracket_with_one_comparable_number():
    assert bracket({"fp32": 50.0}, None, 0.1) is None
    assert bracket({"fp32": 50.0, "fp16": 50.1, "weird": 1.0}, None, 0.1) is None


def test_precision_notes_name_the_precision():
    assert precision_note("tf32") is None and precision_note(None) is None and comparable("tf32-all")
    assert "bf16" in precision_note("bf16") and not comparable("bf16")
    assert "'fp8'" in precision_note("fp8") and "unknown" in precision_note("fp8") and not comparable("fp8")


def test_conditions_come_from_the_manifest():
    manifest = load_manifest()
    a100 = conditions_for(manifest.get("memorynetv2_aspp_hrnetv2w48_lip"), "single")
    assert matching_precision(a100) == "tf32"
    mcibi_2021 = conditions_for(manifest.get("mcibi_deeplabv3_r50_ade20k"), "single")
    assert matching_precision(mcibi_2021) == "fp32"
    # a blank cell upstream filled: upstream_now's conditions
    filled = manifest.get("memorynetv2_fcn_resnet50os8_lip")
    assert filled.documented["single"] is None
    assert conditions_for(filled, "single") is filled.upstream_now.conditions["single"]
    assert conditions_for(SimpleNamespace(), "single") is None


def _result(precision, miou, status="complete", split="val", variant="upstream-head", hour=1):
    from datetime import datetime, timezone

    return SimpleNamespace(precision=precision, miou=miou, miou_rounded=miou, status=status, split=split,
                           variant=variant, finished=datetime(2026, 1, 1, hour, tzinfo=timezone.utc))


def test_report_bracket_picks_the_documented_arithmetic_among_the_files():
    from repro.results.brackets import report_bracket

    entry = load_manifest().get("memorynetv2_aspp_hrnetv2w48_lip")  # 2022, A100: TF32 convolutions likely
    fp32, tf32, old_tf32 = _result("fp32", 56.70), _result("tf32", 56.75, hour=3), _result("tf32", 50.0, hour=2)
    bf16, smoke = _result("bf16", 56.0), _result("fp32", 10.0, status="partial")
    picked, found = report_bracket(entry, "single", fp32, [fp32, tf32, old_tf32, bf16, smoke], "0.1")
    assert picked is tf32 and found.chosen == "tf32"  # the newest tf32 file
    assert found.others == (("fp32", Decimal("56.70")),) and found.spread == Decimal("0.05")
    # one comparable precision: no bracket, the current result stays
    assert report_bracket(entry, "single", fp32, [fp32, bf16, smoke], "0.1") == (fp32, None)
    # another forward or split never enters the bracket
    other = _result("tf32", 56.75, variant="training-era")
    assert report_bracket(entry, "single", fp32, [fp32, other], "0.1") == (fp32, None)
    # a non-comparable current result is left to the report's own rule
    assert report_bracket(entry, "single", bf16, [bf16, fp32, tf32], "0.1") == (bf16, None)


# -- the report: brackets shown, an unknown precision named and never dropped ---------------------


def _write(folder, model_id, protocol, miou, precision, hour=1):
    from datetime import datetime, timezone

    from repro.results.files import EvalResult, result_filename

    result = EvalResult(
        model_id=model_id, protocol=protocol, settings={}, dataset="lip", split="val", data_root="/data/LIP",
        status="complete", miou=miou, num_images=10000, num_images_total=10000, precision=precision,
        device="cuda:0 (NVIDIA A100-SXM4-80GB)", torch_version="2.13.0", repro_version="0",
        started=datetime(2026, 1, 1, hour, tzinfo=timezone.utc), finished=datetime(2026, 1, 1, hour, 30, tzinfo=timezone.utc),
        seconds=60.0, images_per_second=1.0)
    path = folder / result_filename(model_id, protocol, precision=precision)
    path.write_text(result.model_dump_json(), encoding="utf-8")
    return path


def test_report_compares_the_documented_arithmetic_and_shows_the_other(tmp_path):
    from repro.report.table import build_report

    model = "memorynetv2_aspp_hrnetv2w48_lip"  # single documented 56.xx on an A100 in 2022: tf32
    documented = load_manifest().get(model).documented["single"]
    _write(tmp_path, model, "single", documented - 0.30, "fp32")
    _write(tmp_path, model, "single", documented + 0.04, "tf32", hour=2)
    table = build_report(load_manifest(), tmp_path, ids=[model])
    row = table.row(model, "single")
    assert row["precision"] == "tf32" and row["status"] == "reproduced"
    assert row["delta"] == pytest.approx(0.04)
    assert row["other_precisions"].startswith("fp32 ") and "spread 0.34 > 0.1" in row["other_precisions"]
    assert "compared in tf32 (as documented)" in row["note"]


def test_report_names_an_unknown_precision_and_keeps_the_row(tmp_path):
    from repro.report.table import build_report

    model = "memorynetv2_aspp_hrnetv2w48_lip"
    _write(tmp_path, model, "flip", 57.0, "fp8")
    table = build_report(load_manifest(), tmp_path, ids=[model])
    row = table.row(model, "flip")
    assert row["status"] == "non-comparable" and row["precision"] == "fp8"
    assert "precision 'fp8'" in row["note"] and row["measured"] == pytest.approx(57.0)
    assert table.notes == []  # not skipped as a damaged file


def test_status_explain_and_report_agree_on_the_current_result(tmp_path):
    """A row documented in TF32 with an older tf32 and a newer fp32 result: every command stands
    on the tf32 one (the documented arithmetic), not on the newest file."""
    from repro.explain.explanation import find_result
    from repro.report.table import build_report
    from repro.status import model_statuses

    model = "memorynetv2_aspp_hrnetv2w48_lip"
    documented = load_manifest().get(model).documented["single"]
    tf32 = _write(tmp_path, model, "single", documented, "tf32", hour=1)
    _write(tmp_path, model, "single", documented - 0.3, "fp32", hour=2)
    assert build_report(load_manifest(), tmp_path, ids=[model]).row(model, "single")["precision"] == "tf32"
    assert find_result(model, "single", results_dir=tmp_path) == tf32
    (status,) = model_statuses([model], manifest=load_manifest(), results_dir=tmp_path, data_root=tmp_path / "data").models
    single = next(p for p in status.protocols if p.protocol == "single")
    assert single.result_file == str(tf32)
