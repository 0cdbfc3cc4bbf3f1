"""Dataset facts (classes, splits, counts, folders, flip pairs) against upstream's published facts."""

from __future__ import annotations

import pytest

from repro.datasets import DATASETS, get_spec
from repro.errors import DatasetError

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


# Folder each dataset unpacks to under the data root (upstream's archive layout and rootdir).
FOLDERS = {
    "ade20k": "ADE20k", "cityscapes": "CityScapes", "cocostuff10k": "COCOStuff10k", "lip": "LIP",
    "voc": "VOCdevkit/VOC2012", "pascalcontext59": "VOCdevkit/VOC2010", "vspw": "VSPW_480p",
}


def test_registry_names_and_folders():
    assert set(DATASETS) == set(FACTS)
    for name, spec in DATASETS.items():
        assert spec.name == name
        assert spec.folder == FOLDERS[name]


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


def test_the_facts_other_modules_read_from_the_spec():
    """What the plan, `repro explain` and fetch used to keep in tables of their own."""
    sizes = {name: spec.typical_image_size for name, spec in DATASETS.items()}
    assert sizes == {"ade20k": (512, 683), "cityscapes": (1024, 2048), "cocostuff10k": (480, 640),
                     "lip": (256, 192), "voc": (375, 500), "pascalcontext59": (375, 500), "vspw": (480, 853)}
    assert [name for name, spec in DATASETS.items() if spec.fixed_image_size] == ["cityscapes"]
    shares = {name: spec.usual_ignore_share for name, spec in DATASETS.items()}
    assert shares == {"ade20k": 0.10, "cityscapes": 0.12, "cocostuff10k": 0.08, "lip": 0.02, "voc": 0.06,
                      "pascalcontext59": 0.20, "vspw": 0.05}
    assert DATASETS["vspw"].expected_images("val") == round(343 * 251633 / 3536)  # frames, estimated
    assert DATASETS["ade20k"].expected_images("val") == 2000 and DATASETS["ade20k"].expected_images("x") is None
    assert all(spec.sources and spec.manual and spec.markers for spec in DATASETS.values())


def test_names_any_case_and_fetchs_aliases():
    from repro.datasets import find_dataset

    assert find_dataset(" LIP ").name == "lip"
    assert find_dataset("pc59", aliases=True).name == "pascalcontext59"
    with pytest.raises(DatasetError, match="unknown --dataset 'pc59'; .*choose from ade20k") as info:
        find_dataset("pc59", "--dataset")  # aliases are fetch's spellings only
    assert info.value.exit_code == 2


def test_split_size_is_counted_in_the_unit_of_the_official_count():
    from repro.datasets import SplitSize
    from repro.datasets.base import Located

    videos = Located(entries=[None] * 5, base=None, videos={"a": 3, "b": 2})  # 5 frames in 2 videos
    size = DATASETS["vspw"].size("val", videos)
    assert (size.found, size.official, size.unit) == (2, 343, "videos")
    assert size.subset and not size.complete and size.describe() == "2 of the official 343 videos"
    whole, more = DATASETS["lip"].size("val", range(10000)), DATASETS["lip"].size("val", range(10001))
    assert whole.complete and not whole.subset
    assert not more.complete and not more.subset  # not the official split, but no run is partial for it
    assert SplitSize(5, None).complete and not SplitSize(5, None).subset  # no official count: never a subset


def test_check_status_and_plan_judge_a_folder_by_the_same_size(tmp_path, monkeypatch):
    import synthetic_data as sd

    from repro.datasets import check_dataset
    from repro.planning.plan import inspect_dataset
    from repro.status import dataset_status

    lip = sd.make_lip(tmp_path / "my_lip", n_val=3)
    roots = {"lip": lip}
    problems = check_dataset("lip", lip)
    status = dataset_status("lip", "val", dataset_roots=roots)
    info = inspect_dataset("lip", "val", dataset_roots=roots)
    assert problems == ["LIP val has 3 images but the official split has 10000: the dataset is incomplete or its "
                        "id list is wrong; re-extract the archive (or accept a partial dataset with --allow-subset)"]
    assert (status.state, status.count, status.expected) == ("incomplete", 3, 10000)
    assert info.subset and info.size().describe() == "3 of the official 10000 images"
    monkeypatch.setitem(DATASETS["lip"].splits, "val", 3)  # the same folder as the whole split
    assert check_dataset("lip", lip) == []
    assert dataset_status("lip", "val", dataset_roots=roots).state == "complete"
    assert not inspect_dataset("lip", "val", dataset_roots=roots).subset
