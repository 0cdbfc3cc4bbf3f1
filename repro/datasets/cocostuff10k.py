"""COCO-Stuff-10k (v1.1): 182 classes (91 things incl. 11 unused + 91 stuff), evaluated on test (1000)."""

from __future__ import annotations

from pathlib import Path

from repro.datasets.base import (
    DatasetLayout,
    DatasetSpec,
    Entry,
    LabelRule,
    Located,
    read_id_list,
    reduce_zero_table,
    require_dir,
)
from repro.datasets.sources import FROM_COMMAND, UPSTREAM_RELEASE, Archive, Source, upstream_archive
from repro.errors import DatasetError

CLASS_NAMES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'street sign', 'stop sign', 'parking meter', 'bench',
    'bird', 'cat', 'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe',
    'hat', 'backpack', 'umbrella', 'shoe', 'eye glasses', 'handbag', 'tie', 'suitcase',
    'frisbee', 'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove',
    'skateboard', 'surfboard', 'tennis racket', 'bottle', 'plate', 'wine glass', 'cup', 'fork',
    'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot',
    'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed', 'mirror',
    'dining table', 'window', 'desk', 'toilet', 'door', 'tv', 'laptop', 'mouse', 'remote',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'blender',
    'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush', 'hair brush',
    'banner', 'blanket', 'branch', 'bridge', 'building-other', 'bush', 'cabinet', 'cage',
    'cardboard', 'carpet', 'ceiling-other', 'ceiling-tile', 'cloth', 'clothes', 'clouds',
    'counter', 'cupboard', 'curtain', 'desk-stuff', 'dirt', 'door-stuff', 'fence',
    'floor-marble', 'floor-other', 'floor-stone', 'floor-tile', 'floor-wood', 'flower', 'fog',
    'food-other', 'fruit', 'furniture-other', 'grass', 'gravel', 'ground-other', 'hill',
    'house', 'leaves', 'light', 'mat', 'metal', 'mirror-stuff', 'moss', 'mountain', 'mud',
    'napkin', 'net', 'paper', 'pavement', 'pillow', 'plant-other', 'plastic', 'platform',
    'playingfield', 'railing', 'railroad', 'river', 'road', 'rock', 'roof', 'rug', 'salad',
    'sand', 'sea', 'shelf', 'sky-other', 'skyscraper', 'snow', 'solid-other', 'stairs', 'stone',
    'straw', 'structural-other', 'table', 'tent', 'textile-other', 'towel', 'tree', 'vegetable',
    'wall-brick', 'wall-concrete', 'wall-other', 'wall-panel', 'wall-stone', 'wall-tile',
    'wall-wood', 'water-other', 'waterdrops', 'window-blind', 'window-other', 'wood',
)


BAD_VALUE_TEXT = (
    "COCO-Stuff-10k labels hold 0..182 and 255: use the .mat files of cocostuff-10k-v1.1.zip"
)


RULE = LabelRule(
    reader="mat",
    num_classes=182,
    table=reduce_zero_table(182, extra_ignored=(255,)),
    mat_key="S",
    bad_value_text=BAD_VALUE_TEXT,
)


class COCOStuff10kLayout(DatasetLayout):
    """images/<id>.jpg, annotations/<id>.mat, imageLists/<split>.txt: the flat layout of
    cocostuff-10k-v1.1.zip (also upstream's COCOStuff10k archive). A `cocostuff-10k-v1.1`
    sub-folder holding that layout is accepted too."""

    def label_name(self, sample_id: str) -> str:
        return f"{sample_id}.mat"

    def locate(self, root: Path, split: str) -> Located:
        for base in (root, root / "cocostuff-10k-v1.1"):
            if (base / "images").is_dir() and (base / "annotations").is_dir():
                break
        else:
            raise DatasetError(
                f"no COCO-Stuff-10k layout under {root}: expected images/ and annotations/; pass the "
                f"folder that cocostuff-10k-v1.1.zip (or upstream's COCOStuff10k.tar.gz) unpacks to"
            )
        id_list = base / "imageLists" / f"{split}.txt"
        if not id_list.is_file():
            # train and test images share one folder, so the split cannot be guessed from files.
            raise DatasetError(
                f"missing id list {id_list}: COCO-Stuff-10k keeps train and test images in one folder, "
                f"so the {split} ids come only from it; it ships with cocostuff-10k-v1.1.zip"
            )
        ids = read_id_list(id_list)
        require_dir(base / "images", "COCO-Stuff-10k images", "re-extract cocostuff-10k-v1.1.zip")
        entries = [Entry(i, base / "images" / f"{i}.jpg", base / "annotations" / self.label_name(i)) for i in ids]
        return Located(entries, base)


_OFFICIAL_ZIP = "http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/cocostuff-10k-v1.1.zip"

SPEC = DatasetSpec(
    name="cocostuff10k",
    title="COCO-Stuff-10k",
    num_classes=182,
    class_names=CLASS_NAMES,
    folder="COCOStuff10k",
    markers=(
        ("images", "annotations", "imageLists"),
        ("cocostuff-10k-v1.1/images", "cocostuff-10k-v1.1/annotations", "cocostuff-10k-v1.1/imageLists"),
    ),
    splits={"test": 1000},
    default_split="test",
    typical_image_size=(480, 640),
    layout=COCOStuff10kLayout(),
    rule=RULE,
    label_encoding=".mat key 'S'; 0 and 255 ignored, 1..182 -> 0..181 (no compaction to 171)",
    usual_ignore_share=0.08,
    sources=(
        Source("upstream", "upstream's packaged COCOStuff10k.tar.gz", (upstream_archive("COCOStuff10k.tar.gz"),)),
        Source("official", "the official cocostuff-10k-v1.1.zip", (Archive((_OFFICIAL_ZIP,)),)),
    ),
    manual=(
        "COCO-Stuff-10k (test = 1000 images) is public; either file works:\n"
        f"  {UPSTREAM_RELEASE}COCOStuff10k.tar.gz\n"
        f"  {_OFFICIAL_ZIP}\n"
        f"then: {FROM_COMMAND.format(name='cocostuff10k')}"
    ),
    aliases=("cocostuff", "coco-stuff-10k"),
)
