"""PASCAL VOC 2012 segmentation: 21 classes incl. background, evaluated on val (1449 images)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from repro.datasets.base import (
    IGNORE,
    DatasetLayout,
    DatasetSpec,
    Entry,
    LabelRule,
    Located,
    read_id_list,
)
from repro.datasets.sources import FROM_COMMAND, UPSTREAM_RELEASE, Archive, Source, upstream_archive
from repro.errors import DatasetError

CLASS_NAMES = (
    '__background__', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
    'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
    'sheep', 'sofa', 'train', 'tvmonitor',
)


BAD_VALUE_TEXT = (
    "VOC labels hold class indices 0..20 and 255 (boundary); other values usually mean palette "
    "masks converted to grayscale brightness: use the palette PNGs of VOCtrainval_11-May-2012.tar "
    "or upstream's VOCdevkit archive"
)


# Official SegmentationClass PNGs are palette images whose indices are the classes; upstream's
# packaged archive holds single-channel index PNGs with the same values.
RULE = LabelRule(
    reader="cv2", num_classes=21, table={255: IGNORE}, palette_as_indices=True, bad_value_text=BAD_VALUE_TEXT
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


def voc_entries(base: Path, list_dir: str, ann_folder: str, split: str, what: str, archive: str,
                label_name: Callable[[str], str]) -> list[Entry]:
    id_list = base / "ImageSets" / list_dir / f"{split}.txt"
    if not id_list.is_file():
        # every split shares JPEGImages/, so the split exists only through its list
        raise DatasetError(
            f"missing id list {id_list}: {what} keeps all splits' images in one folder, so the {split} "
            f"ids come only from it; it ships with {archive}"
        )
    ids = read_id_list(id_list)
    return [Entry(i, base / "JPEGImages" / f"{i}.jpg", base / ann_folder / label_name(i)) for i in ids]


class VOCLayout(DatasetLayout):
    """VOCdevkit/VOC2012/{JPEGImages,SegmentationClass}, ImageSets/Segmentation/<split>.txt
    (official VOCtrainval_11-May-2012 and upstream's packaged archive)."""

    _archive = "VOCtrainval_11-May-2012.tar (or upstream's VOCdevkit archive)"

    def label_name(self, sample_id: str) -> str:
        return f"{sample_id}.png"

    def locate(self, root: Path, split: str) -> Located:
        base = find_voc_year(root, "2012", "SegmentationClass", "PASCAL VOC 2012", self._archive)
        entries = voc_entries(base, "Segmentation", "SegmentationClass", split, "PASCAL VOC", self._archive,
                              self.label_name)
        return Located(entries, base)


_OFFICIAL_TAR = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"

SPEC = DatasetSpec(
    name="voc",
    title="PASCAL VOC 2012",
    num_classes=21,
    class_names=CLASS_NAMES,
    folder="VOCdevkit/VOC2012",
    markers=(
        ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"),
        ("VOC2012/JPEGImages", "VOC2012/SegmentationClass", "VOC2012/ImageSets/Segmentation"),
    ),
    splits={"val": 1449},
    default_split="val",
    typical_image_size=(375, 500),
    layout=VOCLayout(),
    rule=RULE,
    label_encoding="index PNG (official palette PNGs read as indices); 0..20 classes, 255 ignored",
    usual_ignore_share=0.06,
    sources=(
        Source("upstream", "upstream's packaged VOCdevkit.zip.001-003", (upstream_archive("VOCdevkit.zip", 3),)),
        Source("official", "the official VOC2012 trainval tar (val labels as palette PNGs)",
               (Archive((_OFFICIAL_TAR,)),)),
    ),
    manual=(
        "PASCAL VOC 2012 (val = 1449 images) is public; either works:\n"
        f"  {UPSTREAM_RELEASE}VOCdevkit.zip.001, .002, .003 (all three parts)\n"
        f"  {_OFFICIAL_TAR} (official)\n"
        f"then: {FROM_COMMAND.format(name='voc')}"
    ),
    aliases=("pascalvoc", "voc2012", "vocaug"),
)
