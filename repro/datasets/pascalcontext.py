"""PASCAL-Context-59 (VOC 2010 images, 59 classes without background), evaluated on val (5105)."""

from __future__ import annotations

from pathlib import Path

from repro.datasets.base import DatasetLayout, DatasetSpec, LabelRule, Located, reduce_zero_table
from repro.datasets.sources import UPSTREAM_RELEASE, Source, upstream_archive
from repro.datasets.voc import find_voc_year, voc_entries

CLASS_NAMES = (
    'aeroplane', 'bag', 'bed', 'bedclothes', 'bench', 'bicycle', 'bird', 'boat', 'book',
    'bottle', 'building', 'bus', 'cabinet', 'car', 'cat', 'ceiling', 'chair', 'cloth',
    'computer', 'cow', 'cup', 'curtain', 'dog', 'door', 'fence', 'floor', 'flower', 'food',
    'grass', 'ground', 'horse', 'keyboard', 'light', 'motorbike', 'mountain', 'mouse', 'person',
    'plate', 'platform', 'pottedplant', 'road', 'rock', 'sheep', 'shelves', 'sidewalk', 'sign',
    'sky', 'snow', 'sofa', 'table', 'track', 'train', 'tree', 'truck', 'tvmonitor', 'wall',
    'water', 'window', 'wood',
)


BAD_VALUE_TEXT = (
    "PASCAL-Context-59 labels hold 0..59 (0 = background) and 255; larger values suggest the "
    "full 459-class labels: convert trainval_merged.json to the 59-class masks (mmsegmentation's "
    "pascal_context converter) or use upstream's PascalContext archive"
)


RULE = LabelRule(
    reader="cv2", num_classes=59, table=reduce_zero_table(59, extra_ignored=(255,)), bad_value_text=BAD_VALUE_TEXT
)


class PascalContext59Layout(DatasetLayout):
    """VOCdevkit/VOC2010/{JPEGImages,SegmentationClassContext},
    ImageSets/SegmentationContext/<split>.txt (upstream's archive and the mmseg-converted layout)."""

    _archive = "upstream's PascalContext archive (or mmsegmentation's converted VOC2010 layout)"

    def label_name(self, sample_id: str) -> str:
        return f"{sample_id}.png"

    def locate(self, root: Path, split: str) -> Located:
        base = find_voc_year(root, "2010", "SegmentationClassContext", "PASCAL-Context", self._archive)
        entries = voc_entries(
            base, "SegmentationContext", "SegmentationClassContext", split, "PASCAL-Context", self._archive,
            self.label_name,
        )
        return Located(entries, base)


SPEC = DatasetSpec(
    name="pascalcontext59",
    title="PASCAL-Context-59",
    num_classes=59,
    class_names=CLASS_NAMES,
    folder="VOCdevkit/VOC2010",
    markers=(
        ("JPEGImages", "SegmentationClassContext"),
        ("VOC2010/JPEGImages", "VOC2010/SegmentationClassContext"),
    ),
    splits={"val": 5105},
    default_split="val",
    typical_image_size=(375, 500),
    layout=PascalContext59Layout(),
    rule=RULE,
    label_encoding="cv2 grayscale PNG; 0 (background) and 255 ignored, 1..59 -> 0..58",
    usual_ignore_share=0.20,
    sources=(
        Source("upstream", "upstream's packaged PascalContext.tar.gz", (upstream_archive("PascalContext.tar.gz"),)),
    ),
    manual=(
        "PASCAL-Context-59 is built from two public files plus a conversion:\n"
        "  http://host.robots.ox.ac.uk/pascal/VOC/voc2010/VOCtrainval_03-May-2010.tar (images) and\n"
        "  https://codalabuser.blob.core.windows.net/public/trainval_merged.json (labels),\n"
        "  converted to VOCdevkit/VOC2010/SegmentationClassContext/*.png (0 = background, 1..59) with\n"
        "  the Detail API (e.g. mmsegmentation's tools/dataset_converters/pascal_context.py), and\n"
        "  ImageSets/SegmentationContext/val.txt.\n"
        f"Easier: upstream's package {UPSTREAM_RELEASE}PascalContext.tar.gz "
        "(`repro fetch --dataset pascalcontext59`)."
    ),
    aliases=("pascalcontext", "pascal-context", "pc59"),
)
