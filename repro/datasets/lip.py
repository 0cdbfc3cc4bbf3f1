"""LIP (Look Into Person, single-person parsing): 20 classes incl. background, evaluated on val (10000)."""

from __future__ import annotations

from pathlib import Path

from repro.datasets.base import (
    DatasetLayout,
    DatasetSpec,
    Entry,
    LabelRule,
    Located,
    list_files,
    read_id_list,
)
from repro.datasets.sources import UPSTREAM_RELEASE, Archive, Source, upstream_archive
from repro.errors import DatasetError

CLASS_NAMES = (
    '__background__', 'hat', 'hair', 'glove', 'sunglasses', 'upperclothes', 'dress', 'coat',
    'socks', 'pants', 'jumpsuits', 'scarf', 'skirt', 'face', 'leftArm', 'rightArm', 'leftLeg',
    'rightLeg', 'leftShoe', 'rightShoe',
)

# Channels swapped when a prediction of a width-flipped image is flipped back
# (rightArm<->leftArm, rightLeg<->leftLeg, rightShoe<->leftShoe), in upstream's order.
FLIP_PAIRS = ((15, 14), (17, 16), (19, 18))

# No clsid2label upstream: no remapping and no invalid-value assertion; >= 20 becomes ignore.
RULE = LabelRule(reader="cv2", num_classes=20, table=None)

# upstream's split name -> folder prefix ({prefix}_images, {prefix}_segmentations)
_SPLIT_PREFIX = {"train": "train", "val": "val", "test": "testing"}


class LIPLayout(DatasetLayout):
    """Packaged: <root>/{val_images,val_segmentations}, <root>/val_id.txt. Official downloads:
    <root>/TrainVal_images/val_images (+ val_id.txt) and
    <root>/TrainVal_parsing_annotations/val_segmentations (each possibly nested once more)."""

    def label_name(self, sample_id: str) -> str:
        return f"{sample_id}.png"

    def locate(self, root: Path, split: str) -> Located:
        prefix = _SPLIT_PREFIX[split]
        image_parents = (root, root / "TrainVal_images", root / "TrainVal_images" / "TrainVal_images")
        ann_parents = (
            root,
            root / "TrainVal_parsing_annotations",
            root / "TrainVal_parsing_annotations" / "TrainVal_parsing_annotations",
        )
        image_parent = next((p for p in image_parents if (p / f"{prefix}_images").is_dir()), None)
        if image_parent is None:
            raise DatasetError(
                f"no LIP layout under {root}: expected {prefix}_images/ (or TrainVal_images/{prefix}_images/); "
                f"pass the folder that LIP.tar.gz or the official TrainVal_*.zip files unpack to"
            )
        image_dir = image_parent / f"{prefix}_images"
        ann_parent = next((p for p in ann_parents if (p / f"{prefix}_segmentations").is_dir()), None)
        if ann_parent is None and SPEC.has_labels(split):
            raise DatasetError(
                f"missing folder {prefix}_segmentations under {root} (LIP {split} labels); extract "
                f"TrainVal_parsing_annotations.zip next to TrainVal_images (or use upstream's LIP.tar.gz)"
            )
        ann_dir = (ann_parent or root) / f"{prefix}_segmentations"
        notes = []
        id_list = next((p / f"{split}_id.txt" for p in (root, image_parent) if (p / f"{split}_id.txt").is_file()), None)
        if id_list is not None:
            ids = read_id_list(id_list)
        else:
            ids = [name[: -len(".jpg")] for name in list_files(image_dir, ".jpg")]
            notes.append(
                f"LIP: no id list {split}_id.txt in {root}; using the {len(ids)} .jpg files in {image_dir}, sorted"
            )
        entries = [Entry(i, image_dir / f"{i}.jpg", ann_dir / self.label_name(i)) for i in ids]
        return Located(entries, root, notes)


SPEC = DatasetSpec(
    name="lip",
    title="LIP",
    num_classes=20,
    class_names=CLASS_NAMES,
    folder="LIP",
    markers=(("val_images", "val_segmentations"), ("TrainVal_images", "TrainVal_parsing_annotations")),
    splits={"val": 10000},
    default_split="val",
    typical_image_size=(256, 192),  # stretched to a square by its protocol: the size does not matter
    layout=LIPLayout(),
    rule=RULE,
    flip_pairs=FLIP_PAIRS,
    label_encoding="cv2 grayscale PNG, no mapping; 0..19 are classes (background counts), >= 20 ignored",
    usual_ignore_share=0.02,
    sources=(
        Source("upstream", "upstream's packaged LIP.tar.gz", (upstream_archive("LIP.tar.gz"),)),
        Source(
            "official",
            "the official TrainVal zips (Google Drive / Baidu via sysu-hcp.net)",
            (Archive(("TrainVal_images.zip",)), Archive(("TrainVal_parsing_annotations.zip",))),
            downloadable=False,
        ),
    ),
    manual=(
        "LIP official files are on Google Drive / Baidu (links at http://sysu-hcp.net/lip/):\n"
        "  download TrainVal_images.zip and TrainVal_parsing_annotations.zip, then\n"
        "  repro fetch --dataset lip --from TrainVal_images.zip --from TrainVal_parsing_annotations.zip\n"
        f"Or let repro download upstream's package: {UPSTREAM_RELEASE}LIP.tar.gz"
    ),
)
