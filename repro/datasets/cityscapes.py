"""Cityscapes (fine annotations): 19 classes; val is scored locally, test on the official server."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from repro.datasets.base import (
    IGNORE,
    DatasetLayout,
    DatasetSpec,
    Entry,
    LabelRule,
    Located,
    list_files,
    read_id_list,
    require_dir,
)
from repro.datasets.sources import UPSTREAM_RELEASE, Archive, Source, upstream_archive
from repro.errors import DatasetError
from repro.fileio import atomic_path

if TYPE_CHECKING:  # numpy and PIL load when a submission is written
    import numpy as np

CLASS_NAMES = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic_light', 'traffic_sign',
    'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train',
    'motorcycle', 'bicycle',
)

# trainId -> labelId (cityscapesScripts' labels table); index = trainId.
TRAINID_TO_LABELID = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
# labelIds that are void / not evaluated: mapped to ignore.
_IGNORED_LABELIDS = (0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30)
LABELID_TO_TRAINID = {
    **{label_id: IGNORE for label_id in _IGNORED_LABELIDS},
    **{label_id: train_id for train_id, label_id in enumerate(TRAINID_TO_LABELID)},
}

# Colour of each labelId 0..33, then the license plate (id -1), as cityscapesScripts lists them;
# the submission PNGs carry this palette like upstream's.
_LABELID_COLOURS = (
    (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (111, 74, 0), (81, 0, 81),
    (128, 64, 128), (244, 35, 232), (250, 170, 160), (230, 150, 140), (70, 70, 70), (102, 102, 156),
    (190, 153, 153), (180, 165, 180), (150, 100, 100), (150, 120, 90), (153, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 0, 90), (0, 0, 110), (0, 80, 100),
    (0, 0, 230), (119, 11, 32),
    (0, 0, 142),  # license plate (id -1, written at the last palette row)
)
TRAINID_COLOURS = tuple(_LABELID_COLOURS[label_id] for label_id in TRAINID_TO_LABELID)  # for --paint


def _trainid_or_labelid_hint(values) -> str:
    if 255 in values:  # trainId images mark ignore with 255; labelIds never use it
        return (
            "this looks like a trainId image (255 = ignore); the gtFine folder must hold the "
            "*_gtFine_labelIds.png files of gtFine_trainvaltest.zip"
        )
    return "Cityscapes labelIds run from 0 to 33: use the *_gtFine_labelIds.png files of gtFine_trainvaltest.zip"


RULE = LabelRule(reader="cv2", num_classes=19, table=LABELID_TO_TRAINID, bad_value_hint=_trainid_or_labelid_hint)


def _missing_label_hint(label_path: Path) -> str | None:
    stem = label_path.name[: -len("_gtFine_labelIds.png")]
    for suffix, what in (("_gtFine_labelTrainIds.png", "trainIds"), ("_gtFine_color.png", "colour images")):
        if (label_path.parent / f"{stem}{suffix}").exists():
            return (
                f"the folder holds {what} ({stem}{suffix}) but upstream reads labelIds: "
                f"extract the *_gtFine_labelIds.png files of gtFine_trainvaltest.zip"
            )
    return None


class CityscapesLayout(DatasetLayout):
    """<root>/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png and
    <root>/gtFine/<split>/<city>/<name>_gtFine_labelIds.png; id lists <root>/<split>.txt
    (upstream's archive) or, for the official zips, the sorted city folders."""

    def label_name(self, sample_id: str) -> str:
        return f"{sample_id.replace('leftImg8bit', 'gtFine_labelIds')}.png"

    def locate(self, root: Path, split: str) -> Located:
        if not (root / "leftImg8bit").is_dir():
            raise DatasetError(
                f"no Cityscapes layout under {root}: expected leftImg8bit/ (and gtFine/); pass the folder "
                f"that CityScapes.7z or leftImg8bit_trainvaltest.zip + gtFine_trainvaltest.zip unpack to"
            )
        fix = "extract leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip (or upstream's CityScapes.7z)"
        image_dir = require_dir(root / "leftImg8bit" / split, f"Cityscapes {split} images", fix)
        ann_dir = root / "gtFine" / split
        if SPEC.has_labels(split):
            require_dir(ann_dir, f"Cityscapes {split} annotations", fix)
        notes = []
        id_list = root / f"{split}.txt"
        if id_list.is_file():
            ids = read_id_list(id_list)
        else:
            ids = []
            for city in sorted(p.name for p in image_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
                ids += [f"{city}/{name[: -len('.png')]}" for name in list_files(image_dir / city, "_leftImg8bit.png")]
            notes.append(
                f"Cityscapes: no id list {id_list} (upstream's packaged archive has one); "
                f"using the {len(ids)} images found in {image_dir}/<city>/, sorted"
            )
        entries = [Entry(i, image_dir / f"{i}.png", ann_dir / self.label_name(i)) for i in ids]
        return Located(entries, root, notes, missing_label_hint=_missing_label_hint)


SPEC = DatasetSpec(
    name="cityscapes",
    title="Cityscapes",
    num_classes=19,
    class_names=CLASS_NAMES,
    folder="CityScapes",
    markers=(("leftImg8bit", "gtFine"),),
    splits={"val": 500, "test": 1525},
    default_split="val",
    typical_image_size=(1024, 2048),  # every image
    fixed_image_size=True,
    layout=CityscapesLayout(),
    rule=RULE,
    server_splits=frozenset({"test"}),
    label_encoding="cv2 grayscale *_gtFine_labelIds.png; labelId -> trainId (19 classes), the rest ignored",
    usual_ignore_share=0.12,
    wrong_encoding_hint="labelIds and trainIds mixed up (this dataset expects *_gtFine_labelIds.png)",
    colours=TRAINID_COLOURS,
    sources=(
        Source("upstream", "upstream's packaged CityScapes.7z.001-011 (no login needed)",
               (upstream_archive("CityScapes.7z", 11),)),
        Source(
            "official",
            "the official zips (free account at cityscapes-dataset.com)",
            (Archive(("gtFine_trainvaltest.zip",)), Archive(("leftImg8bit_trainvaltest.zip",))),
            downloadable=False,
        ),
    ),
    manual=(
        "Cityscapes official files need a (free) account:\n"
        "  1. log in at https://www.cityscapes-dataset.com/downloads/\n"
        "  2. download gtFine_trainvaltest.zip (241 MB) and leftImg8bit_trainvaltest.zip (11 GB)\n"
        "  3. repro fetch --dataset cityscapes --from gtFine_trainvaltest.zip "
        "--from leftImg8bit_trainvaltest.zip   (or --from the folder holding both)\n"
        "Without an account, `repro fetch --dataset cityscapes` downloads upstream's packaged copy "
        f"({UPSTREAM_RELEASE}CityScapes.7z.001 ... .011).\n"
        "Rows evaluated on the test split are scored by the Cityscapes server: `repro eval` writes "
        "the submission, you upload it."
    ),
)


# ---------------------------------------------------------------------------------------------
# Test-server submission


def trainid_to_labelid(prediction: np.ndarray) -> np.ndarray:
    """uint8 labelId map of a trainId prediction (values 0..18)."""
    import numpy as np

    prediction = np.asarray(prediction)
    if prediction.ndim != 2:
        raise ValueError(f"expected an HxW trainId map, got shape {prediction.shape}")
    if prediction.size and (prediction.min() < 0 or prediction.max() >= len(TRAINID_TO_LABELID)):
        raise ValueError(f"trainIds must be in 0..18, got {int(prediction.min())}..{int(prediction.max())}")
    lut = np.asarray(TRAINID_TO_LABELID, dtype=np.uint8)
    return lut[prediction.astype(np.int64)]


def submission_filename(sample_id: str) -> str:
    """PNG name the server expects for one test image, e.g. berlin_000000_000019_leftImg8bit.png."""
    return f"{os.path.splitext(os.path.basename(sample_id))[0]}.png"


def _palette() -> list[int]:
    return [channel for colour in _LABELID_COLOURS for channel in colour]


class CityscapesSubmissionWriter:
    """Writes labelId PNGs for the Cityscapes test server, one per test image, then zips them.

    Each PNG is palette mode with indices = labelIds and the Cityscapes colours, as upstream's
    formatresults writes them. Files are written atomically, so an interrupted run can resume:
    `has(sample_id)` says whether a prediction is already on disk.
    """

    def __init__(self, out_dir: str | os.PathLike, zip_path: str | os.PathLike | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.zip_path = Path(zip_path) if zip_path else self.out_dir.with_name(self.out_dir.name + ".zip")

    def path_for(self, sample_id: str) -> Path:
        return self.out_dir / submission_filename(sample_id)

    def has(self, sample_id: str) -> bool:
        return self.path_for(sample_id).is_file()

    def add(self, sample_id: str, prediction) -> Path:
        """Write the labelId PNG of one trainId prediction (numpy array or torch tensor, HxW)."""
        from PIL import Image

        if hasattr(prediction, "detach"):
            prediction = prediction.detach().cpu().numpy()
        image = Image.fromarray(trainid_to_labelid(prediction)).convert("P")
        image.putpalette(_palette())
        target = self.path_for(sample_id)
        with atomic_path(target) as tmp:
            image.save(tmp, format="PNG")
        return target

    def written(self) -> list[Path]:
        return sorted(p for p in self.out_dir.glob("*.png") if not p.name.startswith("."))

    def finish(self, expected_count: int | None = None) -> Path:
        """Zip every PNG (at the top level of the archive) and return the zip path."""
        files = self.written()
        if expected_count is not None and len(files) != expected_count:
            raise DatasetError(
                f"{self.out_dir} holds {len(files)} predictions but the Cityscapes test split has "
                f"{expected_count} images; finish the evaluation before zipping the submission"
            )
        with atomic_path(self.zip_path) as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for path in files:
                    archive.write(path, arcname=path.name)
        return self.zip_path


def write_cityscapes_submission(
    predictions: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
    out_dir: str | os.PathLike,
    zip_path: str | os.PathLike | None = None,
) -> Path:
    """Write all (sample_id, trainId map) predictions as labelId PNGs and zip them; returns the zip."""
    writer = CityscapesSubmissionWriter(out_dir, zip_path)
    items = predictions.items() if isinstance(predictions, Mapping) else predictions
    for sample_id, prediction in items:
        writer.add(sample_id, prediction)
    return writer.finish()
