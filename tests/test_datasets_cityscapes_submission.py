"""Cityscapes test-server submission: labelId palette PNGs named after the images, zipped."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from repro.datasets import CityscapesSubmissionWriter, submission_filename, write_cityscapes_submission
from repro.errors import DatasetError

# cityscapesScripts: trainId -> labelId, and a few labelId colours
TRAIN_TO_LABEL = {0: 7, 1: 8, 2: 11, 3: 12, 4: 13, 5: 17, 6: 19, 7: 20, 8: 21, 9: 22, 10: 23, 11: 24, 12: 25,
                  13: 26, 14: 27, 15: 28, 16: 31, 17: 32, 18: 33}
COLOURS = {7: (128, 64, 128), 26: (0, 0, 142), 33: (119, 11, 32), 0: (0, 0, 0), 5: (111, 74, 0)}

ID = "berlin/berlin_000000_000019_leftImg8bit"


def _prediction(seed=0, shape=(16, 24)):
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, 19, shape).astype(np.int32)
    pred.reshape(-1)[:19] = np.arange(19)
    return pred


def test_png_holds_labelids_as_palette_indices(tmp_path):
    writer = CityscapesSubmissionWriter(tmp_path / "sub")
    pred = _prediction()
    path = writer.add(ID, pred)
    assert path == tmp_path / "sub" / "berlin_000000_000019_leftImg8bit.png"
    with Image.open(path) as image:
        assert image.mode == "P"
        indices = np.array(image)
        palette = image.getpalette()
    expected = np.vectorize(TRAIN_TO_LABEL.get)(pred)
    np.testing.assert_array_equal(indices, expected)
    for label_id, colour in COLOURS.items():
        assert tuple(palette[3 * label_id: 3 * label_id + 3]) == colour
    assert writer.has(ID) and not writer.has("bonn/bonn_000000_000020_leftImg8bit")


def test_finish_zips_every_png_atomically(tmp_path):
    out = tmp_path / "sub"
    writer = CityscapesSubmissionWriter(out)
    ids = [ID, "bonn/bonn_000000_000020_leftImg8bit", "mainz/mainz_000001_000123_leftImg8bit"]
    for i, sample_id in enumerate(ids):
        writer.add(sample_id, torch.from_numpy(_prediction(i)))
    writer.add(ids[0], _prediction(5))  # re-adding overwrites
    with pytest.raises(DatasetError, match="holds 3 predictions but the Cityscapes test split has 1525"):
        writer.finish(expected_count=1525)
    zip_path = writer.finish(expected_count=3)
    assert zip_path == tmp_path / "sub.zip"
    with zipfile.ZipFile(zip_path) as archive:
        assert sorted(archive.namelist()) == sorted(submission_filename(i) for i in ids)
        with archive.open(submission_filename(ids[0])) as handle:
            np.testing.assert_array_equal(np.array(Image.open(handle)), np.vectorize(TRAIN_TO_LABEL.get)(_prediction(5)))
    leftovers = [p.name for p in tmp_path.rglob(".tmp-*")]
    assert leftovers == []


def test_write_submission_helper_and_bad_predictions(tmp_path):
    zip_path = write_cityscapes_submission({ID: _prediction()}, tmp_path / "a", zip_path=tmp_path / "x" / "s.zip")
    assert zip_path.is_file() and zipfile.ZipFile(zip_path).namelist() == ["berlin_000000_000019_leftImg8bit.png"]
    writer = CityscapesSubmissionWriter(tmp_path / "b")
    with pytest.raises(ValueError):
        writer.add(ID, np.full((4, 4), 19))
    with pytest.raises(ValueError):
        writer.add(ID, np.zeros((2, 4, 4), np.int64))
    assert not writer.has(ID)
