"""PASCAL VOC 2012 segmentation: 21 classes incl. background, evaluated on val (1449 images)."""

from __future__ import annotations

from pathlib import Path

from repro.datasets.base import (
    IGNORE,
    DatasetLayout,
    DatasetSpec,
    Entry,
    LabelRule,
    Located,
    read_id_list,
)
from repro.errors import DatasetError
from repro.paths import DATASET_FOLDERS

CLASS_NAMES = (
    '__background__', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
    'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
    'sheep', 'sofa', 'train', 'tvmonitor',
)

SPEC = DatasetSpec(
    name="voc",
    title="PASCAL VOC 2012",
    num_classes=21,
    class_names=CLASS_NAMES,
    folder=DATASET_FOLDERS["voc"],
    splits={"val": 1449},
    default_split="val",
    label_encoding="index PNG (official palette PNGs read as indices); 0..20 classes, 255 ignored",
)


def _bad_value_hint(values) -> str:
    return (
        "VOC labels hold class indices 0..20 and 255 (boundary); other values usually mean palette "
        "masks converted to grayscale brightness: use the palette PNGs of VOCtrainval_11-May-2012.tar "
        "or upstream's VOCdevkit archive"
    )


# Official SegmentationClass PNGs are palette images whose indices are the classes; upstream's
# packaged archive holds single-channel index PNGs with the same values.
RULE = LabelRule(
    reader="cv2", num_classes=21, table={255: IGNORE}, palette_as_indices=True, bad_value_hint=_bad_value_hint
)


def find_voc_year(root: Path, year: str, ann_folder: str, what: str, archive: str) -> Path:
    """The VOC<year> folder: root itself, root/VOC<year> or root/VOCdevkit/VOC<year>."""
    for base in (root, root / f"VOC{year}", root / "VOCdevkit" / f"VOC{year}"):
        if (base / "JPEGImages").is_dir() and (base / ann_folder).is_dir():
            return base
    raise DatasetError(
        f"no {what} layout under {root}: expected JPEGImages/ and {ann_folder}/ in VOCdevkit/VOC{year}; "
        f"pass the VOCdevkit/VOC{year} folder that {archive} unpacks to"
    )


def voc_entries(base: Path, list_dir: str, ann_folder: str, split: str, what: str, archive: str) -> list[Entry]:
    id_list = base / "ImageSets" / list_dir / f"{split}.txt"
    if not id_list.is_file():
        # every split shares JPEGImages/, so the split exists only through its list
        raise DatasetError(
            f"missing id list {id_list}: {what} keeps all splits' images in one folder, so the {split} "
            f"ids come only from it; it ships with {archive}"
        )
    return [Entry(i, base / "JPEGImages" / f"{i}.jpg", base / ann_folder / f"{i}.png") for i in read_id_list(id_list)]


class VOCLayout(DatasetLayout):
    """VOCdevkit/VOC2012/{JPEGImages,SegmentationClass}, ImageSets/Segmentation/<split>.txt
    (official VOCtrainval_11-May-2012 and upstream's packaged archive)."""

    spec = SPEC
    rule = RULE
    _archive = "VOCtrainval_11-May-2012.tar (or upstream's VOCdevkit archive)"

    def locate(self, root: Path, split: str) -> Located:
        base = find_voc_year(root, "2012", "SegmentationClass", "PASCAL VOC 2012", self._archive)
        entries = voc_entries(base, "Segmentation", "SegmentationClass", split, "PASCAL VOC", self._archive)
        return Located(entries, base)
