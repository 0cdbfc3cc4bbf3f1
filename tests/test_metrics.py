"""Confusion matrix and mIoU against an independent numpy computation and hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from repro.metrics import ConfusionMatrix, compute_scores


def _numpy_iou(pairs, num_classes):
    """Dataset-wide IoU by set counting, per class: |P∩G| / |P∪G| over valid pixels of all images."""
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    for pred, gt in pairs:
        valid = (gt >= 0) & (gt < num_classes)
        for c in range(num_classes):
            p, g = (pred == c) & valid, (gt == c) & valid
            inter[c] += np.sum(p & g)
            union[c] += np.sum(p | g)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def test_hand_worked_example():
    cm = ConfusionMatrix(4)
    gt = np.array([[0, 0, 1, -1]])
    pred = np.array([[0, 1, 1, 2]])
    cm.update(pred, gt)
    scores = cm.scores()
    # class 0: I=1, U=2; class 1: I=1, U=2; class 2 predicted only on an ignored pixel -> NaN; 3 NaN
    np.testing.assert_allclose(scores.iou[:2], [0.5, 0.5])
    assert math.isnan(scores.iou[2]) and math.isnan(scores.iou[3])
    assert scores.miou == pytest.approx(0.5)
    assert scores.aacc == pytest.approx(2 / 3)
    assert scores.macc == pytest.approx((0.5 + 1.0) / 2)


def test_class_predicted_but_never_in_ground_truth_counts_as_zero():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 0, 2, 1]), np.array([0, 0, 0, 1]))
    scores = cm.scores()
    assert scores.iou[2] == 0.0
    # (2/3 + 1 + 0) / 3: the zero is averaged in
    assert scores.miou == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert math.isnan(scores.acc[2])  # not in GT: excluded from mAcc


def test_labels_outside_range_are_ignored():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 1, 2, 2]), np.array([0, 3, 255, -100]))
    assert int(cm.matrix.sum()) == 1


def test_random_images_match_numpy():
    rng = np.random.default_rng(0)
    num_classes = 7
    cm = ConfusionMatrix(num_classes)
    pairs = []
    for _ in range(5):
        h, w = rng.integers(5, 30, size=2)
        gt = rng.integers(-1, num_classes - 1, size=(h, w))  # class 6 never in GT
        pred = rng.integers(0, num_classes - 2, size=(h, w))  # class 5, 6 never predicted
        pred[0, 0] = 6 if gt[0, 0] >= 0 else pred[0, 0]
        pairs.append((pred, gt))
        cm.update(torch.from_numpy(pred), torch.from_numpy(gt))
    expected = _numpy_iou(pairs, num_classes)
    scores = cm.scores()
    np.testing.assert_allclose(scores.iou, expected, equal_nan=True)
    assert scores.miou == pytest.approx(np.nanmean(expected))
    valid = np.concatenate([g[(g >= 0)].ravel() for _, g in pairs])
    correct = sum(int(np.sum((p == g) & (g >= 0))) for p, g in pairs)
    assert scores.aacc == pytest.approx(correct / valid.size)
    assert cm.matrix.dtype == torch.int64
    assert int(cm.matrix.sum()) == valid.size


def test_merge_and_roundtrip():
    rng = np.random.default_rng(1)
    a, b, both = ConfusionMatrix(4), ConfusionMatrix(4), ConfusionMatrix(4)
    for cm in (a, b):
        pred, gt = rng.integers(0, 4, 50), rng.integers(-1, 4, 50)
        cm.update(pred, gt)
        both.update(pred, gt)
    a.merge(b)
    assert torch.equal(a.matrix, both.matrix)
    again = ConfusionMatrix.from_numpy(a.to_numpy())
    assert torch.equal(again.matrix, a.matrix)


def test_empty_matrix_gives_nan_without_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = compute_scores(np.zeros((3, 3), np.int64))
    assert math.isnan(scores.miou) and math.isnan(scores.aacc) and math.isnan(scores.fwiou)
    assert np.isnan(scores.gt_share).all()


def test_frequency_weighted_iou_by_hand():
    # class 0: 3 gt pixels, I=2, U=3 (IoU 2/3); class 1: 1 gt pixel, I=1, U=2 (0.5); class 2 is
    # predicted only on an ignored pixel (NaN, weight 0). fwIoU = 3/4 * 2/3 + 1/4 * 1/2
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 0, 1, 1, 2]), np.array([0, 0, 0, 1, -1]))
    scores = cm.scores()
    np.testing.assert_array_equal(scores.gt_share, [0.75, 0.25, 0.0])
    assert scores.iou[0] == pytest.approx(2 / 3) and scores.iou[1] == 0.5 and math.isnan(scores.iou[2])
    assert scores.fwiou == pytest.approx(0.75 * 2 / 3 + 0.25 * 0.5)


def test_scoring_recorded_counts_does_not_load_torch():
    """report and explain score evidence sidecars without torch: it loads only to count pixels."""
    import subprocess
    import sys

    probe = ("import sys, numpy as np; from repro.metrics import compute_scores; "
             "assert compute_scores(np.eye(3, dtype=np.int64)).miou == 1.0; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_per_class_in_percent_by_name():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 1, 1]), np.array([0, 1, 0]))
    per_class = cm.scores().per_class(["a", "b", "c"])
    assert per_class == {"a": pytest.approx(50.0), "b": pytest.approx(50.0), "c": None}


def test_bad_inputs():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError):
        cm.update(np.array([0, 3]), np.array([0, 0]))
    with pytest.raises(ValueError):
        cm.update(np.array([0, 1]), np.array([0]))
