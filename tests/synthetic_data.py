"""Tiny synthetic datasets in the real folder layouts, for tests of every part of repro.

Each `make_<dataset>(root, ...)` writes deterministic random images and labels (seeded) under
`root` and returns the folder to pass to `repro.datasets.open_dataset` as the dataset root.
Raw label values cover the dataset's classes *and* its ignore values, so label mapping is
exercised. `make_data_root(data_root)` builds several datasets under their upstream folder names
(`DatasetSpec.folder`), i.e. a mini data root.

Labels are written in the encoding of the layout asked for: single-channel index PNGs ('L')
for upstream's archives, palette PNGs for official VOC masks and VSPW, `.mat` files (key 'S')
for COCO-Stuff-10k, labelIds for Cityscapes.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import scipy.io
from PIL import Image

from repro.datasets import DATASETS

Size = tuple[int, int]  # (height, width)


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _write_image(path: Path, rng: np.random.Generator, size: Size) -> None:
    """A smooth-ish random BGR image (JPEG or PNG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    small = rng.integers(0, 256, (max(2, size[0] // 4), max(2, size[1] // 4), 3), dtype=np.uint8)
    image = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    noise = rng.integers(-12, 13, image.shape)
    image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def _random_label(rng: np.random.Generator, size: Size, values: Sequence[int]) -> np.ndarray:
    """Labels drawn from `values`, every value present at least once when the image is big enough."""
    values = np.asarray(values)
    label = values[rng.integers(0, len(values), size)]
    flat = label.reshape(-1)
    k = min(len(values), flat.size)
    flat[rng.choice(flat.size, k, replace=False)] = rng.permutation(values)[:k]
    return label


def _write_png(path: Path, label: np.ndarray, palette: Sequence[int] | None = None) -> None:
    """An 8-bit PNG: mode 'L' (index values) or, with a palette, mode 'P' (palette indices)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(label.astype(np.uint8))  # mode 'L'
    if palette is not None:
        image = image.convert("P")  # indices = values
        image.putpalette(list(palette))
    image.save(path)


def bitwise_palette(n: int = 256) -> list[int]:
    """The VOC-style colour map (class index bits spread over R, G, B), flat [r, g, b, ...]."""
    palette = []
    for index in range(n):
        r = g = b = 0
        value = index
        for shift in range(8):
            r |= ((value >> 0) & 1) << (7 - shift)
            g |= ((value >> 1) & 1) << (7 - shift)
            b |= ((value >> 2) & 1) << (7 - shift)
            value >>= 3
        palette += [r, g, b]
    return palette


def _write_list(path: Path, ids: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


# Raw label values of each dataset (classes and ignore values as found in the files).
ADE20K_RAW = list(range(0, 151))
CITYSCAPES_RAW = list(range(0, 34))
COCOSTUFF_RAW = list(range(0, 183)) + [255]
LIP_RAW = list(range(0, 20)) + [255]
VOC_RAW = list(range(0, 21)) + [255]
PASCALCONTEXT59_RAW = list(range(0, 60)) + [255]
VSPW_RAW = list(range(0, 125)) + [253, 254, 255]


def make_ade20k(
    root: str | Path,
    n_val: int = 3,
    size: Size = (40, 60),
    *,
    official: bool = False,
    with_list: bool = True,
    n_train: int = 1,
    seed: int = 0,
) -> Path:
    """Upstream's archive (root/ADEChallengeData2016/..., val.txt) or, with `official=True`, the
    official zip unpacked directly (root = ADEChallengeData2016, no id lists)."""
    root = Path(root)
    base = root if official else root / "ADEChallengeData2016"
    rng = _rng(seed, "ade20k")
    for split, folder, n in (("val", "validation", n_val), ("train", "training", n_train)):
        stem = "ADE_val_" if split == "val" else "ADE_train_"
        ids = [f"{stem}{i + 1:08d}" for i in range(n)]
        for image_id in ids:
            _write_image(base / "images" / folder / f"{image_id}.jpg", rng, size)
            _write_png(base / "annotations" / folder / f"{image_id}.png", _random_label(rng, size, ADE20K_RAW))
        if with_list and not official:
            _write_list(base / f"{split}.txt", ids)
    return root


def cityscapes_ids(n: int, cities: Sequence[str], frame0: int = 19) -> list[str]:
    """Ids `<city>/<city>_000000_<frame>_leftImg8bit`, spread round-robin over the cities, sorted."""
    ids = [f"{cities[i % len(cities)]}/{cities[i % len(cities)]}_000000_{frame0 + i:06d}_leftImg8bit" for i in range(n)]
    return sorted(ids)


def make_cityscapes(
    root: str | Path,
    n_val: int = 3,
    n_test: int = 2,
    size: Size = (32, 64),
    *,
    with_lists: bool = True,
    cities: Sequence[str] = ("frankfurt", "lindau"),
    test_cities: Sequence[str] = ("berlin", "bonn"),
    label_kind: str = "labelIds",
    seed: int = 0,
) -> Path:
    """leftImg8bit/<split>/<city>/ PNG images and gtFine/<split>/<city>/ labels.

    label_kind: 'labelIds' (correct), 'labelTrainIds' (trainIds 0..18/255 in *_labelTrainIds.png
    files, the classic mistake) or 'color' (RGBA *_gtFine_color.png files only). Test-split labels
    are dummy labelIds (all 0), as in gtFine_trainvaltest.zip. `with_lists=False` gives the
    official zips (no <split>.txt).
    """
    root = Path(root)
    rng = _rng(seed, "cityscapes")
    for split, n, split_cities in (("val", n_val, cities), ("test", n_test, test_cities)):
        ids = cityscapes_ids(n, split_cities)
        for image_id in ids:
            _write_image(root / "leftImg8bit" / split / f"{image_id}.png", rng, size)
            label_stem = root / "gtFine" / split / image_id.replace("leftImg8bit", "gtFine")
            if split == "test":
                _write_png(Path(f"{label_stem}_labelIds.png"), np.zeros(size, np.uint8))
                continue
            label_ids = _random_label(rng, size, CITYSCAPES_RAW)
            if label_kind == "labelIds":
                _write_png(Path(f"{label_stem}_labelIds.png"), label_ids)
            elif label_kind == "labelTrainIds":
                lut = np.full(256, 255, np.uint8)
                for train_id, label_id in enumerate((7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)):
                    lut[label_id] = train_id
                _write_png(Path(f"{label_stem}_labelTrainIds.png"), lut[label_ids])
            elif label_kind == "color":
                path = Path(f"{label_stem}_color.png")
                path.parent.mkdir(parents=True, exist_ok=True)
                colours = rng.integers(0, 256, (256, 4), dtype=np.uint8)
                colours[:, 3] = 255
                Image.fromarray(colours[label_ids]).save(path)
            else:
                raise ValueError(label_kind)
        if with_lists:
            _write_list(root / f"{split}.txt", ids)
    return root


def make_cocostuff10k(
    root: str | Path,
    n_test: int = 3,
    size: Size = (40, 60),
    *,
    n_train: int = 2,
    subfolder: bool = False,
    with_list: bool = True,
    seed: int = 0,
) -> Path:
    """The flat layout of cocostuff-10k-v1.1.zip: images/, annotations/*.mat (key 'S'), imageLists/.
    `subfolder=True` puts it in root/cocostuff-10k-v1.1/."""
    root = Path(root)
    base = root / "cocostuff-10k-v1.1" if subfolder else root
    rng = _rng(seed, "cocostuff10k")
    ids = {
        "test": [f"COCO_train2014_{100 + 7 * i:012d}" for i in range(n_test)],
        "train": [f"COCO_train2014_{101 + 7 * i:012d}" for i in range(n_train)],
    }
    for split, split_ids in ids.items():
        for image_id in split_ids:
            _write_image(base / "images" / f"{image_id}.jpg", rng, size)
            (base / "annotations").mkdir(parents=True, exist_ok=True)
            label = _random_label(rng, size, COCOSTUFF_RAW).astype(np.uint8)
            scipy.io.savemat(base / "annotations" / f"{image_id}.mat", {"S": label, "names": np.array(["x"])})
        if with_list:
            _write_list(base / "imageLists" / f"{split}.txt", split_ids)
    return root


def make_lip(
    root: str | Path,
    n_val: int = 3,
    size: Size = (48, 32),
    *,
    official: bool = False,
    with_list: bool = True,
    seed: int = 0,
) -> Path:
    """Upstream's archive (val_images/, val_segmentations/, val_id.txt) or, with `official=True`,
    the official downloads (TrainVal_images/{val_images,val_id.txt},
    TrainVal_parsing_annotations/val_segmentations)."""
    root = Path(root)
    image_parent = root / "TrainVal_images" if official else root
    ann_parent = root / "TrainVal_parsing_annotations" if official else root
    rng = _rng(seed, "lip")
    ids = [f"{100034 + 11 * i}_{483681 + i}" for i in range(n_val)]
    for image_id in ids:
        _write_image(image_parent / "val_images" / f"{image_id}.jpg", rng, size)
        _write_png(ann_parent / "val_segmentations" / f"{image_id}.png", _random_label(rng, size, LIP_RAW))
    if with_list:
        _write_list(image_parent / "val_id.txt", ids)
    return root


def _make_voc_like(
    base: Path,
    rng: np.random.Generator,
    ids: dict[str, list[str]],
    size: Size,
    ann_folder: str,
    list_folder: str,
    raw_values: Sequence[int],
    palette: bool,
    with_list: bool,
) -> None:
    for split, split_ids in ids.items():
        for image_id in split_ids:
            _write_image(base / "JPEGImages" / f"{image_id}.jpg", rng, size)
            label = _random_label(rng, size, raw_values)
            _write_png(base / ann_folder / f"{image_id}.png", label, bitwise_palette() if palette else None)
        if with_list:
            _write_list(base / "ImageSets" / list_folder / f"{split}.txt", split_ids)


def make_voc(
    root: str | Path,
    n_val: int = 3,
    size: Size = (36, 48),
    *,
    n_train: int = 2,
    palette: bool = True,
    devkit: bool = False,
    with_list: bool = True,
    seed: int = 0,
) -> Path:
    """VOCdevkit/VOC2012 with JPEGImages/, SegmentationClass/, ImageSets/Segmentation/<split>.txt.

    palette=True writes official palette masks; False writes upstream-archive-style 'L' index
    PNGs. Returns the VOC2012 folder, or with `devkit=True` the VOCdevkit folder above it.
    """
    devkit_dir = Path(root) / "VOCdevkit" if devkit else None
    base = devkit_dir / "VOC2012" if devkit_dir else Path(root)
    rng = _rng(seed, "voc")
    ids = {"val": [f"2007_{33 + 10 * i:06d}" for i in range(n_val)], "train": [f"2007_{32 + 10 * i:06d}" for i in range(n_train)]}
    _make_voc_like(base, rng, ids, size, "SegmentationClass", "Segmentation", VOC_RAW, palette, with_list)
    return devkit_dir or base


def make_pascalcontext59(
    root: str | Path,
    n_val: int = 3,
    size: Size = (36, 48),
    *,
    n_train: int = 2,
    devkit: bool = False,
    palette: bool = False,
    with_list: bool = True,
    seed: int = 0,
) -> Path:
    """VOCdevkit/VOC2010 with JPEGImages/, SegmentationClassContext/ ('L' PNGs, 0..59 and 255),
    ImageSets/SegmentationContext/<split>.txt. Returns VOC2010 (or VOCdevkit with `devkit=True`)."""
    devkit_dir = Path(root) / "VOCdevkit" if devkit else None
    base = devkit_dir / "VOC2010" if devkit_dir else Path(root)
    rng = _rng(seed, "pascalcontext59")
    ids = {"val": [f"2008_{2 + 10 * i:06d}" for i in range(n_val)], "train": [f"2008_{1 + 10 * i:06d}" for i in range(n_train)]}
    _make_voc_like(
        base, rng, ids, size, "SegmentationClassContext", "SegmentationContext", PASCALCONTEXT59_RAW, palette, with_list
    )
    return devkit_dir or base


def make_vspw(
    root: str | Path,
    n_videos: int = 2,
    frames: int | Sequence[int] = (3, 2),
    size: Size = (30, 40),
    *,
    n_train_videos: int = 1,
    with_list: bool = True,
    seed: int = 0,
) -> Path:
    """VSPW_480p: data/<video>/origin/<frame>.jpg, data/<video>/mask/<frame>.png (palette masks),
    val.txt / train.txt listing video folders. `frames`: frames per val video (an int or one per video)."""
    root = Path(root)
    rng = _rng(seed, "vspw")
    per_video = [frames] * n_videos if isinstance(frames, int) else list(frames)[:n_videos]
    per_video += [per_video[-1] if per_video else 2] * (n_videos - len(per_video))
    lists = {
        "val": [f"{127 + 13 * i}_{'abcdefghij'[i % 10]}Video{i}" for i in range(n_videos)],
        "train": [f"{1 + 13 * i}_trainVideo{i}" for i in range(n_train_videos)],
    }
    counts = {"val": per_video, "train": [2] * n_train_videos}
    for split, videos in lists.items():
        for video, n_frames in zip(videos, counts[split]):
            # frames written out of order, so sorted enumeration is observable
            for frame in reversed(range(n_frames)):
                name = f"{frame * 5:08d}"
                _write_image(root / "data" / video / "origin" / f"{name}.jpg", rng, size)
                label = _random_label(rng, size, VSPW_RAW)
                _write_png(root / "data" / video / "mask" / f"{name}.png", label, bitwise_palette())
        if with_list:
            _write_list(root / f"{split}.txt", videos)
    return root


MAKERS = {
    "ade20k": make_ade20k,
    "cityscapes": make_cityscapes,
    "cocostuff10k": make_cocostuff10k,
    "lip": make_lip,
    "voc": make_voc,
    "pascalcontext59": make_pascalcontext59,
    "vspw": make_vspw,
}


def make_dataset(name: str, root: str | Path, **kwargs) -> Path:
    """`make_<name>(root, **kwargs)` by dataset name."""
    return MAKERS[name](root, **kwargs)


def make_data_root(data_root: str | Path, names: Iterable[str] | None = None, seed: int = 0) -> Path:
    """A mini data root: each dataset in upstream's archive layout under its `DatasetSpec.folder`.

    Point $REPRO_DATA (or `--data-root`) at the returned folder.
    """
    data_root = Path(data_root)
    for name in names or MAKERS:
        kwargs = {"palette": False} if name == "voc" else {}  # upstream's VOC archive holds index PNGs
        MAKERS[name](data_root / DATASETS[name].folder, seed=seed, **kwargs)
    return data_root
