"""The classic label-encoding mistakes are refused loudly, never silently mis-read."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from PIL import Image

import synthetic_data as sd
from repro.datasets import DATASETS, LabelError, LabelRule, map_label, open_dataset, read_label
from repro.datasets.base import reduce_zero_table


def _ade_label(root, n=1):
    return root / "ADEChallengeData2016" / "annotations" / "validation" / f"ADE_val_{n:08d}.png"


def test_palette_png_where_cv2_reads_grayscale_is_refused(tmp_path):
    root = sd.make_ade20k(tmp_path / "ADE20k", n_val=1)
    path = _ade_label(root)
    values = np.array(Image.open(path))
    image = Image.fromarray(values).convert("P")
    image.putpalette(sd.bitwise_palette())
    image.save(path)
    with pytest.raises(LabelError, match="palette PNG") as info:
        open_dataset("ade20k", root, "val")[0]
    assert info.value.kind == "palette" and str(path) in str(info.value)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA"])
def test_colour_label_images_are_refused(tmp_path, mode):
    root = sd.make_lip(tmp_path / "LIP", n_val=1)
    path = next((root / "val_segmentations").glob("*.png"))
    Image.open(path).convert(mode).save(path)
    with pytest.raises(LabelError, match="colour image"):
        open_dataset("lip", root, "val")[0]


def test_colour_vspw_mask_is_refused(tmp_path):
    root = sd.make_vspw(tmp_path / "v", n_videos=1, frames=1)
    video = (root / "val.txt").read_text().strip()
    path = next((root / "data" / video / "mask").glob("*.png"))
    Image.open(path).convert("RGB").save(path)
    with pytest.raises(LabelError, match="colour image"):
        open_dataset("vspw", root, "val")[0]


def test_sixteen_bit_png_is_refused_where_cv2_reads_8bit(tmp_path):
    root = sd.make_ade20k(tmp_path / "ADE20k", n_val=1)
    path = _ade_label(root)
    Image.fromarray(np.array(Image.open(path)).astype(np.uint16)).save(path)
    with pytest.raises(LabelError, match="PIL mode"):
        open_dataset("ade20k", root, "val")[0]


def test_values_outside_the_known_set_name_file_and_values(tmp_path):
    root = sd.make_ade20k(tmp_path / "ADE20k", n_val=1)
    path = _ade_label(root)
    values = np.array(Image.open(path))
    values[0, :3] = [151, 200, 151]
    Image.fromarray(values).save(path)
    with pytest.raises(LabelError) as info:
        open_dataset("ade20k", root, "val")[0]
    message = str(info.value)
    assert str(path) in message and "{151, 200}" in message and "\n" not in message


def test_lip_has_no_table_so_large_values_are_ignored_not_errors(tmp_path):
    root = sd.make_lip(tmp_path / "LIP", n_val=1)
    path = next((root / "val_segmentations").glob("*.png"))
    values = np.array(Image.open(path))
    values[0, :4] = [20, 77, 254, 19]
    Image.fromarray(values).save(path)
    label = open_dataset("lip", root, "val")[0].label
    assert label[0, :4].tolist() == [-1, -1, -1, 19]


def test_cityscapes_trainid_files_are_named_in_the_error(tmp_path):
    root = sd.make_cityscapes(tmp_path / "cs", n_val=2, label_kind="labelTrainIds")
    with pytest.raises(Exception, match=r"holds trainIds .*labelIds"):
        open_dataset("cityscapes", root, "val")


def test_cityscapes_colour_files_are_named_in_the_error(tmp_path):
    root = sd.make_cityscapes(tmp_path / "cs", n_val=2, label_kind="color")
    with pytest.raises(Exception, match=r"holds colour images"):
        open_dataset("cityscapes", root, "val")


def test_cityscapes_trainids_renamed_as_labelids_are_detected(tmp_path):
    root = sd.make_cityscapes(tmp_path / "cs", n_val=1, label_kind="labelTrainIds")
    for path in (root / "gtFine" / "val").rglob("*_labelTrainIds.png"):
        path.rename(str(path).replace("_labelTrainIds", "_labelIds"))
    with pytest.raises(LabelError, match="looks like a trainId image"):
        open_dataset("cityscapes", root, "val")[0]


def test_cocostuff_mat_without_S_key(tmp_path):
    root = sd.make_cocostuff10k(tmp_path / "c", n_test=1, n_train=0)
    path = next((root / "annotations").glob("*.mat"))
    scipy.io.savemat(path, {"L": np.zeros((4, 4), np.uint8)})
    with pytest.raises(LabelError, match="no 'S' array"):
        open_dataset("cocostuff10k", root, "test")[0]


def test_cocostuff_mat_with_wider_integer_and_float_types(tmp_path):
    rule = DATASETS["cocostuff10k"].rule
    path = tmp_path / "x.mat"
    raw = np.array([[0, 1, 182, 255]], np.uint16)
    scipy.io.savemat(path, {"S": raw.astype(np.float64)})
    label = read_label(path, rule, "COCO-Stuff-10k")
    assert label.tolist() == [[-1, 0, 181, -1]]
    scipy.io.savemat(path, {"S": np.array([[1.5]])})
    with pytest.raises(LabelError, match="non-integer"):
        read_label(path, rule)


def test_map_label_handles_negative_and_huge_values():
    rule = LabelRule(reader="cv2", num_classes=3, table=reduce_zero_table(3))
    assert map_label(np.array([[0, 1, 3]], np.int32), rule).tolist() == [[-1, 0, 2]]
    with pytest.raises(LabelError, match=r"\{-5\}"):
        map_label(np.array([[-5, 1]], np.int32), rule)
    with pytest.raises(LabelError, match=r"\{5000000\}"):
        map_label(np.array([[1, 5_000_000]], np.int64), rule)
    free = LabelRule(reader="cv2", num_classes=3, table=None)
    assert map_label(np.array([[-5, 2, 3, 10**7]], np.int64), free).tolist() == [[-1, 2, -1, -1]]


def test_every_dataset_has_an_ignore_rule_for_255_or_treats_it_as_ignore():
    raw = np.array([[255]], np.uint8)
    for name, spec in DATASETS.items():
        if name in ("ade20k", "cityscapes"):  # 255 is not a value of these label files
            with pytest.raises(LabelError):
                map_label(raw, spec.rule)
        else:
            assert map_label(raw, spec.rule).tolist() == [[-1]], name
    assert DATASETS["vspw"].num_classes == 124
