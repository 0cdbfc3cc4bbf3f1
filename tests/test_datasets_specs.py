"""Dataset facts (classes, splits, counts, folders, flip pairs) against upstream's published facts."""

from __future__ import annotations

import pytest

from repro.datasets import DATASETS, get_spec
from repro.errors import DatasetError
from repro.paths import DATASET_FOLDERS

# (num_classes, split -> official size, first class, last class), from upstream_test_protocol.md
FACTS = {
    "ade20k": (150, {"val": 2000}, "wall", "flag"),
    "cityscapes": (19, {"val": 500, "test": 1525}, "road", "bicycle"),
    "cocostuff10k": (182, {"test": 1000}, "person", "wood"),
    "lip": (20, {"val": 10000}, "__background__", "rightShoe"),
    "voc": (21, {"val": 1449}, "__background__", "tvmonitor"),
    "pascalcontext59": (59, {"val": 5105}, "aeroplane", "wood"),
    "vspw": (124, {"val": 343}, "wall", "train"),
}


def test_registry_names_and_folders():
    assert set(DATASETS) == set(FACTS)
    for name, spec in DATASETS.items():
        assert spec.name == name
        assert spec.folder == DATASET_FOLDERS[name]


@pytest.mark.parametrize("name", sorted(FACTS))
def test_spec_facts(name):
    num_classes, splits, first, last = FACTS[name]
    spec = DATASETS[name]
    assert spec.num_classes == num_classes == len(spec.class_names)
    assert dict(spec.splits) == splits
    assert spec.class_names[0] == first and spec.class_names[-1] == last
    assert len(set(spec.class_names)) == num_classes
    assert spec.default_split in spec.splits


def test_full_class_lists_where_the_protocol_gives_them():
    assert DATASETS["cityscapes"].class_names == (
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light", "traffic_sign", "vegetation",
        "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
    )
    assert DATASETS["lip"].class_names == (
        "__background__", "hat", "hair", "glove", "sunglasses", "upperclothes", "dress", "coat", "socks", "pants",
        "jumpsuits", "scarf", "skirt", "face", "leftArm", "rightArm", "leftLeg", "rightLeg", "leftShoe", "rightShoe",
    )
    assert DATASETS["voc"].class_names == (
        "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
        "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
    )
    pc59 = (
        "aeroplane bag bed bedclothes bench bicycle bird boat book bottle building bus cabinet car cat ceiling chair "
        "cloth computer cow cup curtain dog door fence floor flower food grass ground horse keyboard light motorbike "
        "mountain mouse person plate platform pottedplant road rock sheep shelves sidewalk sign sky snow sofa table "
        "track train tree truck tvmonitor wall water window wood"
    ).split()
    assert DATASETS["pascalcontext59"].class_names == tuple(pc59)


def test_cocostuff_keeps_the_unused_thing_slots():
    names = DATASETS["cocostuff10k"].class_names
    unused = {11: "street sign", 25: "hat", 28: "shoe", 29: "eye glasses", 44: "plate", 65: "mirror",
              67: "window", 68: "desk", 70: "door", 82: "blender", 90: "hair brush"}
    for index, name in unused.items():
        assert names[index] == name


def test_flip_pairs_and_server_splits():
    assert DATASETS["lip"].flip_pairs == ((15, 14), (17, 16), (19, 18))
    names = DATASETS["lip"].class_names
    for right, left in DATASETS["lip"].flip_pairs:
        assert names[right].startswith("right") and names[left].startswith("left")
        assert names[right][len("right"):] == names[left][len("left"):]
    assert all(not spec.flip_pairs for name, spec in DATASETS.items() if name != "lip")
    assert DATASETS["cityscapes"].server_splits == frozenset({"test"})
    assert not DATASETS["cityscapes"].has_labels("test") and DATASETS["cityscapes"].has_labels("val")
    assert DATASETS["vspw"].count_unit == "videos"


def test_unknown_dataset_suggests_and_is_a_usage_error():
    with pytest.raises(DatasetError) as info:
        get_spec("ade")
    assert info.value.exit_code == 2
    assert "did you mean ade20k" in str(info.value)
