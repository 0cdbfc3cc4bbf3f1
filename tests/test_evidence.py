"""The evidence sidecar: format, digest, merge, and metrics equal to repro.metrics'."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from repro.errors import ReproError
from evidence_support import EvidenceBuilder, count_image

from repro.results.evidence import Evidence, load, merge
from repro.results.files import evidence_path
from repro.fileio import file_sha256
from repro.metrics import ConfusionMatrix, compute_scores


def _images(seed: int = 0, n: int = 7, c: int = 5, shape=(6, 9)):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = rng.integers(-1, c, size=shape)
        label[0, 0] = 255  # out of range: ignored like -1
        pred = np.where(rng.random(shape) < 0.6, np.clip(label, 0, c - 1), rng.integers(0, c, size=shape))
        out.append((f"img{(i * 4) % n:03d}", pred, label))  # ids out of order
    return out, c


def _built(seed: int = 0, **kw) -> tuple[Evidence, ConfusionMatrix]:
    images, c = _images(seed, **kw)
    builder, cm = EvidenceBuilder(c), ConfusionMatrix(c)
    for image_id, pred, label in images:
        builder.add(image_id, pred, label)
        cm.update(pred, label)
    return builder.build(), cm


def test_metrics_equal_repro_metrics_exactly():
    evidence, cm = _built()
    scores, recorded = cm.scores(), evidence.scores()
    assert np.array_equal(evidence.confusion, cm.to_numpy())
    assert evidence.miou() == scores.miou == recorded.miou
    assert (recorded.aacc, recorded.macc, recorded.fwiou) == (scores.aacc, scores.macc, scores.fwiou)
    for name in ("iou", "acc", "gt_share"):
        np.testing.assert_array_equal(getattr(recorded, name), getattr(scores, name))


def test_the_evidence_has_no_formulas_of_its_own():
    """Issue 24: one definition of IoU, mIoU, aAcc, mAcc and fwIoU (repro.metrics); the sidecar's
    helpers that repeated them, and the name helper only tests used, are gone."""
    import repro.results.evidence as evidence_module

    for gone in ("class_iou", "class_acc", "macc", "aacc", "fwiou", "gt_share"):
        assert not hasattr(Evidence, gone), gone
    assert not hasattr(evidence_module, "sidecar_name")
    assert evidence_module.compute_scores is compute_scores


def test_nan_classes_follow_repro_metrics():
    # class 3 never in labels nor predicted (NaN, left out); class 4 predicted only (IoU 0, counts)
    confusion = np.array([[5, 1, 0, 0, 2], [0, 4, 0, 0, 0], [1, 0, 3, 0, 0], [0] * 5, [0] * 5], dtype=np.int64)
    zeros = np.zeros((1, 5), dtype=np.int64)
    evidence = Evidence(image_ids=["a"], pred_area=confusion.sum(0)[None], confusion=confusion,
                        intersect=zeros, union=zeros, gt_area=zeros)
    scores = evidence.scores()
    assert np.isnan(scores.iou[3]) and scores.iou[4] == 0.0
    assert evidence.miou() == compute_scores(confusion).miou
    gt = confusion.sum(1)
    expected = float((gt[gt > 0] / gt.sum() * scores.iou[gt > 0]).sum())
    assert scores.fwiou == expected


def test_rows_sum_to_confusion_totals_and_break_when_tampered():
    evidence, _ = _built()
    assert evidence.totals_match()
    bad = evidence.intersect.copy()
    bad[0, 0] += 1
    assert not Evidence(image_ids=evidence.image_ids, pred_area=evidence.pred_area, confusion=evidence.confusion,
                        intersect=bad, union=evidence.union, gt_area=evidence.gt_area).totals_match()


def test_per_image_iou_and_ignored():
    pred = np.array([[0, 0, 1], [1, 1, 2]])
    label = np.array([[0, 1, 1], [-1, 1, 255]])
    counts = count_image(pred, label, 3)
    assert counts.ignored == 2
    assert list(counts.intersect) == [1, 2, 0]
    assert list(counts.union) == [2, 3, 0]
    evidence = EvidenceBuilder(3)
    evidence.add("x", pred, label)
    built = evidence.build()
    iou = built.image_iou()[0]
    assert iou[0] == 0.5 and iou[1] == 2 / 3 and np.isnan(iou[2])
    assert built.image_miou()[0] == pytest.approx((0.5 + 2 / 3) / 2)
    assert list(built.ignored) == [2] and list(built.image_error()) == [1]


def test_save_load_round_trip_same_bytes_and_no_pickle(tmp_path):
    evidence, _ = _built()
    first = evidence.save(tmp_path / "a.evidence.npz")
    second = evidence.save(tmp_path / "b.evidence.npz")
    assert first == second == file_sha256(tmp_path / "a.evidence.npz")  # deterministic bytes
    loaded = load(tmp_path / "a.evidence.npz", sha256=first)
    for name in ("confusion", "intersect", "union", "gt_area", "pred_area", "ignored"):
        assert np.array_equal(getattr(loaded, name), getattr(evidence, name))
        assert getattr(loaded, name).dtype == np.int64
    assert loaded.image_ids.dtype.kind == "U" and list(loaded.image_ids) == list(evidence.image_ids)
    with np.load(tmp_path / "a.evidence.npz", allow_pickle=False) as npz:
        assert all(npz[name].dtype != object for name in npz.files)
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic temp file is gone


def test_sha256_mismatch_is_one_line(tmp_path):
    evidence, _ = _built()
    digest = evidence.save(tmp_path / "r.evidence.npz")
    other, _ = _built(seed=1)
    other.save(tmp_path / "r.evidence.npz")
    with pytest.raises(ReproError) as err:
        load(tmp_path / "r.evidence.npz", sha256=digest)
    assert "\n" not in str(err.value) and "does not match" in str(err.value)


def test_unreadable_and_missing_files_are_one_line(tmp_path):
    (tmp_path / "bad.evidence.npz").write_bytes(b"not a zip")
    with pytest.raises(ReproError, match="unreadable"):
        load(tmp_path / "bad.evidence.npz")
    with pytest.raises(ReproError, match="missing"):
        load(tmp_path / "none.evidence.npz")
    with zipfile.ZipFile(tmp_path / "short.evidence.npz", "w") as z:  # a confusion without its rows
        import io
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.zeros((2, 2), dtype=np.int64))
        z.writestr("confusion.npy", buf.getvalue())
    with pytest.raises(ReproError, match="malformed"):
        load(tmp_path / "short.evidence.npz")


def test_merge_of_parts_equals_one_pass():
    images, c = _images(n=9)
    whole, parts = EvidenceBuilder(c), [EvidenceBuilder(c) for _ in range(3)]
    for i, (image_id, pred, label) in enumerate(images):
        whole.add(image_id, pred, label)
        parts[i % 3].add(image_id, pred, label)
    merged, one = merge([p.build() for p in parts]), whole.build()
    assert list(merged.image_ids) == sorted(merged.image_ids)
    for name in ("image_ids", "confusion", "intersect", "union", "gt_area", "pred_area", "ignored"):
        assert np.array_equal(getattr(merged, name), getattr(one, name))
    with pytest.raises(ValueError, match="more than one part"):
        merge([parts[0].build(), parts[0].build()])


def test_sorted_by_id_reorders_rows_together():
    evidence, _ = _built()
    shuffled = evidence.select([3, 0, 6, 1, 5, 2, 4])
    back = shuffled.sorted_by_id()
    assert np.array_equal(back.image_ids, evidence.image_ids)
    assert np.array_equal(back.intersect, evidence.intersect)


def test_server_run_keeps_the_histogram_only(tmp_path):
    builder = EvidenceBuilder(3, labelled=False)
    builder.add("b", np.array([[0, 2], [2, 2]]), None)
    builder.add("a", np.array([[1, 1], [1, 1]]), None)
    evidence = builder.build()
    assert not evidence.has_labels and evidence.totals_match()
    assert evidence.pred_area.tolist() == [[0, 4, 0], [1, 0, 3]]
    loaded = load(tmp_path / "s.evidence.npz", evidence.save(tmp_path / "s.evidence.npz"))
    assert loaded.confusion is None and list(loaded.image_ids) == ["a", "b"]
    with pytest.raises(ReproError, match="server run"):
        loaded.miou()


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="pred_area rows"):
        Evidence(image_ids=["a", "b"], pred_area=np.zeros((1, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="together"):
        Evidence(image_ids=["a"], pred_area=np.zeros((1, 3), dtype=np.int64), confusion=np.zeros((3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="differ in shape"):
        count_image(np.zeros((2, 3)), np.zeros((3, 2)), 4)


def test_sidecar_name():
    assert evidence_path("m__single.json").name == "m__single.evidence.npz"
    assert evidence_path("/x/m__flip__training-era.json").name == "m__flip__training-era.evidence.npz"
