"""open_dataset on synthetic mini datasets in every supported layout: discovery, ids, label mapping."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from PIL import Image

import synthetic_data as sd
from repro.datasets import DATASETS, EvalDataset, open_dataset
from repro.errors import DatasetError

# ---------------------------------------------------------------------------------------------
# Independent reference: upstream's read + clsid2label + test-loop ignore rule, written from the
# protocol notes (float32 labels, in-place `seg[seg == key] = value` in dict order, assertion,
# then every value outside [0, C) -> -1).

U_IGNORE = -100


def _reduce_zero(n, extra=()):
    table = {0: U_IGNORE, **{v: U_IGNORE for v in extra}}
    table.update({k: k - 1 for k in range(1, n + 1)})
    return table


CITYSCAPES_CLSID2LABEL = {
    -1: U_IGNORE, 0: U_IGNORE, 1: U_IGNORE, 2: U_IGNORE, 3: U_IGNORE, 4: U_IGNORE, 5: U_IGNORE, 6: U_IGNORE,
    7: 0, 8: 1, 9: U_IGNORE, 10: U_IGNORE, 11: 2, 12: 3, 13: 4, 14: U_IGNORE, 15: U_IGNORE, 16: U_IGNORE,
    17: 5, 18: U_IGNORE, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15,
    29: U_IGNORE, 30: U_IGNORE, 31: 16, 32: 17, 33: 18,
}
UPSTREAM_TABLES = {
    "ade20k": _reduce_zero(150),
    "cityscapes": CITYSCAPES_CLSID2LABEL,
    "cocostuff10k": {0: U_IGNORE, 255: U_IGNORE, **{k: k - 1 for k in range(1, 183)}},
    "lip": None,
    "voc": {255: U_IGNORE},
    "pascalcontext59": {0: U_IGNORE, 255: U_IGNORE, **{k: k - 1 for k in range(1, 60)}},
    "vspw": {0: U_IGNORE, 254: U_IGNORE, 255: U_IGNORE, 253: U_IGNORE, **{k: k - 1 for k in range(1, 125)}},
}


def upstream_label(raw: np.ndarray, name: str) -> np.ndarray:
    num_classes = DATASETS[name].num_classes
    seg = raw.astype(np.float32)
    table = UPSTREAM_TABLES[name]
    if table is not None:
        for key, value in table.items():
            seg[seg == key] = value
        invalid = ((seg < 0) | (seg >= num_classes)) & (seg != U_IGNORE)
        assert invalid.sum() == 0
    gt = seg.astype(np.int32)
    gt[(gt >= num_classes) | (gt < 0)] = -1
    return gt


def raw_values(path: Path) -> np.ndarray:
    """The stored label values, read with PIL / scipy (palette PNGs give their indices)."""
    if path.suffix == ".mat":
        return scipy.io.loadmat(path)["S"]
    return np.array(Image.open(path))


# ---------------------------------------------------------------------------------------------

BUILDERS = {
    "ade20k": lambda tmp: sd.make_ade20k(tmp / "ADE20k"),
    "cityscapes": lambda tmp: sd.make_cityscapes(tmp / "CityScapes"),
    "cocostuff10k": lambda tmp: sd.make_cocostuff10k(tmp / "COCOStuff10k"),
    "lip": lambda tmp: sd.make_lip(tmp / "LIP"),
    "voc": lambda tmp: sd.make_voc(tmp / "VOC2012", palette=False),
    "pascalcontext59": lambda tmp: sd.make_pascalcontext59(tmp / "VOC2010"),
    "vspw": lambda tmp: sd.make_vspw(tmp / "VSPW_480p"),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_labels_match_upstream_mapping(tmp_path, name):
    root = BUILDERS[name](tmp_path)
    split = DATASETS[name].default_split
    dataset = open_dataset(name, root, split)
    assert len(dataset) >= 3
    seen = set()
    for i in range(len(dataset)):
        sample = dataset[i]
        expected = upstream_label(raw_values(sample.label_path), name)
        assert sample.label.dtype == np.int64
        np.testing.assert_array_equal(sample.label, expected)
        assert sample.image.dtype == np.uint8 and sample.image.shape == sample.label.shape + (3,)
        assert sample.image_path == dataset.image_path(i) and sample.id == dataset.ids[i]
        seen.update(np.unique(sample.label).tolist())
    # the synthetic raw values cover every class and the ignore values
    assert seen == set(range(-1, DATASETS[name].num_classes))


def test_ade20k_packaged_layout_uses_the_id_list_order(tmp_path):
    root = sd.make_ade20k(tmp_path / "ADE20k", n_val=3)
    (root / "ADEChallengeData2016" / "val.txt").write_text("ADE_val_00000003\n\nADE_val_00000001  \n")
    dataset = open_dataset("ade20k", root, "val")
    assert dataset.ids == ["ADE_val_00000003", "ADE_val_00000001"]
    assert dataset.image_path(0) == root / "ADEChallengeData2016/images/validation/ADE_val_00000003.jpg"
    assert dataset.label_path(0) == root / "ADEChallengeData2016/annotations/validation/ADE_val_00000003.png"
    assert dataset.notes == []


def test_ade20k_official_zip_without_lists_is_enumerated_with_a_note(tmp_path, caplog, monkeypatch):
    import repro.datasets.base

    monkeypatch.setattr(repro.datasets.base, "_said", set())
    root = sd.make_ade20k(tmp_path / "ADEChallengeData2016", n_val=4, official=True)
    with caplog.at_level(logging.WARNING, logger="repro.datasets"):
        dataset = open_dataset("ade20k", root, "val")
        open_dataset("ade20k", root, "val")
    assert dataset.ids == [f"ADE_val_{i:08d}" for i in range(1, 5)]  # training image not included
    assert len(dataset.notes) == 1 and "no id list" in dataset.notes[0]
    said = [r for r in caplog.records if "no id list" in r.getMessage()]
    assert len(said) == 1  # said once per process, not on every open


def test_image_is_bgr_as_cv2_reads_it(tmp_path):
    root = sd.make_cityscapes(tmp_path / "cs", n_val=1, n_test=0)  # PNG images: lossless
    sample = open_dataset("cityscapes", root, "val")[0]
    rgb = np.array(Image.open(sample.image_path).convert("RGB"))
    np.testing.assert_array_equal(sample.image, rgb[:, :, ::-1])


def test_cityscapes_lists_and_paths(tmp_path):
    root = sd.make_cityscapes(tmp_path / "CityScapes", n_val=4, n_test=3)
    val = open_dataset("cityscapes", root, "val")
    assert val.ids == sd.cityscapes_ids(4, ("frankfurt", "lindau"))
    first = val.ids[0]
    city, name = first.split("/")
    assert val.image_path(0) == root / "leftImg8bit" / "val" / city / f"{name}.png"
    assert val.label_path(0) == root / "gtFine" / "val" / city / name.replace("leftImg8bit", "gtFine_labelIds.png")
    test = open_dataset("cityscapes", root, "test")
    assert len(test) == 3 and not test.has_labels
    sample = test[0]
    assert sample.label is None and sample.label_path is None and sample.image.shape == (32, 64, 3)


def test_cityscapes_official_folders_without_lists(tmp_path):
    root = sd.make_cityscapes(tmp_path / "cityscapes", n_val=5, with_lists=False, cities=("munster", "lindau", "frankfurt"))
    dataset = open_dataset("cityscapes", root, "val")
    assert dataset.ids == sorted(dataset.ids) and len(dataset) == 5
    assert [i.split("/")[0] for i in dataset.ids][0] == "frankfurt"
    assert dataset.notes and "no id list" in dataset.notes[0]


def test_cocostuff_flat_and_subfolder_layouts(tmp_path):
    flat = sd.make_cocostuff10k(tmp_path / "COCOStuff10k", n_test=3, n_train=2)
    dataset = open_dataset("cocostuff10k", flat, "test")
    assert len(dataset) == 3 and dataset.label_path(0).suffix == ".mat"
    nested = sd.make_cocostuff10k(tmp_path / "unzipped", n_test=2, subfolder=True)
    assert len(open_dataset("cocostuff10k", nested)) == 2  # default split: test


def test_cocostuff_without_list_is_an_error(tmp_path):
    root = sd.make_cocostuff10k(tmp_path / "c", with_list=False)
    with pytest.raises(DatasetError, match=r"imageLists/test.txt"):
        open_dataset("cocostuff10k", root, "test")


def test_lip_packaged_and_official_layouts(tmp_path):
    packaged = open_dataset("lip", sd.make_lip(tmp_path / "LIP", n_val=3), "val")
    official_root = sd.make_lip(tmp_path / "official", n_val=3, official=True)
    official = open_dataset("lip", official_root, "val")
    assert packaged.ids == official.ids
    assert official.image_path(0).parent == official_root / "TrainVal_images" / "val_images"
    assert official.label_path(0).parent == official_root / "TrainVal_parsing_annotations" / "val_segmentations"
    no_list = open_dataset("lip", sd.make_lip(tmp_path / "nolist", n_val=3, with_list=False), "val")
    assert no_list.ids == sorted(packaged.ids) and no_list.notes


def test_voc_official_palette_masks_are_read_as_indices(tmp_path):
    palette_root = sd.make_voc(tmp_path / "a", palette=True, seed=3)
    index_root = sd.make_voc(tmp_path / "b", palette=False, seed=3)
    with Image.open(open_dataset("voc", palette_root)[0].label_path) as im:
        assert im.mode == "P"
    for i in range(3):
        a, b = open_dataset("voc", palette_root)[i], open_dataset("voc", index_root)[i]
        np.testing.assert_array_equal(a.label, b.label)
        # what cv2 grayscale would have returned (palette luminance) is not what we return
        assert not np.array_equal(cv2.imread(str(a.label_path), cv2.IMREAD_GRAYSCALE), np.where(a.label < 0, 255, a.label))


@pytest.mark.parametrize("name,maker,folder", [
    ("voc", sd.make_voc, "VOC2012"),
    ("pascalcontext59", sd.make_pascalcontext59, "VOC2010"),
])
def test_voc_family_accepts_the_devkit_folder(tmp_path, name, maker, folder):
    devkit = maker(tmp_path, devkit=True)
    assert devkit.name == "VOCdevkit"
    dataset = open_dataset(name, devkit, "val")
    assert dataset.base == devkit / folder and len(dataset) == 3
    assert [i for i in dataset.ids] == sorted(dataset.ids)


def test_voc_without_list_is_an_error(tmp_path):
    root = sd.make_voc(tmp_path / "v", with_list=False)
    with pytest.raises(DatasetError, match=r"ImageSets/Segmentation/val.txt"):
        open_dataset("voc", root, "val")


def test_vspw_frames_sorted_within_videos_in_list_order(tmp_path):
    root = sd.make_vspw(tmp_path / "VSPW_480p", n_videos=3, frames=(3, 1, 2))
    videos = (root / "val.txt").read_text().split()
    (root / "val.txt").write_text("\n".join([videos[2], videos[0], "", videos[1]]) + "\n")
    dataset = open_dataset("vspw", root, "val")
    expected = [f"{videos[2]}/origin/{i * 5:08d}.jpg" for i in range(2)]
    expected += [f"{videos[0]}/origin/{i * 5:08d}.jpg" for i in range(3)]
    expected += [f"{videos[1]}/origin/00000000.jpg"]
    assert dataset.ids == expected
    assert dataset.videos == {videos[2]: 2, videos[0]: 3, videos[1]: 1}
    assert dataset.image_path(0) == root / "data" / expected[0]
    assert dataset.label_path(0) == root / "data" / videos[2] / "mask" / "00000000.png"


def test_vspw_accepts_the_data_folder_and_needs_the_list(tmp_path):
    root = sd.make_vspw(tmp_path / "VSPW_480p", n_videos=2)
    assert len(open_dataset("vspw", root / "data", "val")) == 5
    (root / "val.txt").unlink()
    with pytest.raises(DatasetError, match="missing video list"):
        open_dataset("vspw", root, "val")


# ---------------------------------------------------------------------------------------------
# Bad layouts: one actionable line each


def test_missing_root_and_missing_layout(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset("ade20k", tmp_path / "nope", "val")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no ADE20k layout"):
        open_dataset("ade20k", tmp_path / "empty", "val")
    with pytest.raises(DatasetError, match="no evaluation split") as info:
        open_dataset("ade20k", tmp_path / "empty", "train")
    assert info.value.exit_code == 2


def test_image_without_label_and_label_without_image(tmp_path):
    root = sd.make_ade20k(tmp_path / "ADE20k", n_val=3)
    (root / "ADEChallengeData2016/annotations/validation/ADE_val_00000002.png").unlink()
    with pytest.raises(DatasetError, match=r"1 of 3 ADE20k images have no label file .*ADE_val_00000002.png") as info:
        open_dataset("ade20k", root, "val")
    assert "\n" not in str(info.value)
    root = sd.make_lip(tmp_path / "LIP", n_val=3)
    next((root / "val_images").glob("*.jpg")).unlink()
    with pytest.raises(DatasetError, match="1 of 3 LIP images are missing"):
        open_dataset("lip", root, "val")


def test_missing_split_folder(tmp_path):
    root = sd.make_cityscapes(tmp_path / "cs", n_val=2)
    import shutil

    shutil.rmtree(root / "gtFine" / "val")
    with pytest.raises(DatasetError, match=r"missing folder .*gtFine/val"):
        open_dataset("cityscapes", root, "val")
    assert len(open_dataset("cityscapes", root, "test")) == 2  # the test split needs no labels


def test_label_size_must_match_image(tmp_path):
    root = sd.make_ade20k(tmp_path / "ADE20k", n_val=1)
    label = root / "ADEChallengeData2016/annotations/validation/ADE_val_00000001.png"
    Image.fromarray(np.ones((10, 10), np.uint8)).save(label)
    with pytest.raises(DatasetError, match="is 10x10 but image"):
        open_dataset("ade20k", root, "val")[0]


def test_unreadable_image(tmp_path):
    root = sd.make_ade20k(tmp_path / "ADE20k", n_val=1)
    (root / "ADEChallengeData2016/images/validation/ADE_val_00000001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="cannot read image"):
        open_dataset("ade20k", root, "val")[0]


def test_dataset_pickles_for_worker_processes(tmp_path):
    root = sd.make_vspw(tmp_path / "v")
    dataset = open_dataset("vspw", root)
    clone = pickle.loads(pickle.dumps(dataset))
    assert isinstance(clone, EvalDataset) and clone.ids == dataset.ids
    np.testing.assert_array_equal(clone[1].label, dataset[1].label)
