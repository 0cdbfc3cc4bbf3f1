"""VSPW (video scene parsing, 480p): 124 classes, evaluated on every frame of the 343 val videos."""

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
    reduce_zero_table,
)
from repro.datasets.sources import FROM_COMMAND, UPSTREAM_RELEASE, Source, upstream_archive
from repro.errors import DatasetError

CLASS_NAMES = (
    'wall', 'ceiling', 'door', 'stair', 'ladder', 'escalator', 'Playground_slide',
    'handrail_or_fence', 'window', 'rail', 'goal', 'pillar', 'pole', 'floor', 'ground', 'grass',
    'sand', 'athletic_field', 'road', 'path', 'crosswalk', 'building', 'house', 'bridge',
    'tower', 'windmill', 'well_or_well_lid', 'other_construction', 'sky', 'mountain', 'stone',
    'wood', 'ice', 'snowfield', 'grandstand', 'sea', 'river', 'lake', 'waterfall', 'water',
    'billboard_or_Bulletin_Board', 'sculpture', 'pipeline', 'flag', 'parasol_or_umbrella',
    'cushion_or_carpet', 'tent', 'roadblock', 'car', 'bus', 'truck', 'bicycle', 'motorcycle',
    'wheeled_machine', 'ship_or_boat', 'raft', 'airplane', 'tyre', 'traffic_light', 'lamp',
    'person', 'cat', 'dog', 'horse', 'cattle', 'other_animal', 'tree', 'flower', 'other_plant',
    'toy', 'ball_net', 'backboard', 'skateboard', 'bat', 'ball',
    'cupboard_or_showcase_or_storage_rack', 'box', 'traveling_case_or_trolley_case', 'basket',
    'bag_or_package', 'trash_can', 'cage', 'plate', 'tub_or_bowl_or_pot', 'bottle_or_cup',
    'barrel', 'fishbowl', 'bed', 'pillow', 'table_or_desk', 'chair_or_seat', 'bench', 'sofa',
    'shelf', 'bathtub', 'gun', 'commode', 'roaster', 'other_machine', 'refrigerator',
    'washing_machine', 'Microwave_oven', 'fan', 'curtain', 'textiles', 'clothes',
    'painting_or_poster', 'mirror', 'flower_pot_or_vase', 'clock', 'book', 'tool', 'blackboard',
    'tissue', 'screen_or_television', 'computer', 'printer', 'Mobile_phone', 'keyboard',
    'other_electronic_product', 'fruit', 'food', 'instrument', 'train',
)


BAD_VALUE_TEXT = (
    "VSPW masks hold 0..124 and 253..255: use the mask PNGs of VSPW_480p"
)


RULE = LabelRule(
    reader="pil",
    num_classes=124,
    table=reduce_zero_table(124, extra_ignored=(253, 254, 255)),
    bad_value_text=BAD_VALUE_TEXT,
)


class VSPWLayout(DatasetLayout):
    """<root>/data/<video>/origin/<frame>.jpg and <root>/data/<video>/mask/<frame>.png, with
    <root>/<split>.txt listing the split's video folders (VSPW_480p, official and upstream's
    archive). The data/ folder itself (video folders directly) is accepted as the root when the
    split list sits in it or next to it."""

    def label_name(self, sample_id: str) -> str:
        video, _, frame = sample_id.split("/")  # <video>/origin/<frame>
        return f"{video}/mask/{frame.replace('.jpg', '.png')}"

    def locate(self, root: Path, split: str) -> Located:
        if (root / "data").is_dir():
            base, data_dir, list_dirs = root, root / "data", (root,)
        elif (root / "VSPW_480p" / "data").is_dir():
            base = root / "VSPW_480p"
            data_dir, list_dirs = base / "data", (base,)
        elif root.is_dir() and any((p / "origin").is_dir() for p in root.iterdir() if p.is_dir()):
            base, data_dir, list_dirs = root, root, (root, root.parent)
        else:
            raise DatasetError(
                f"no VSPW layout under {root}: expected data/<video>/origin/ and data/<video>/mask/; "
                f"pass the VSPW_480p folder"
            )
        id_list = next((d / f"{split}.txt" for d in list_dirs if (d / f"{split}.txt").is_file()), None)
        if id_list is None:
            # train/val/test videos share data/, so the split exists only through its list
            raise DatasetError(
                f"missing video list {list_dirs[0] / f'{split}.txt'}: VSPW keeps every split's videos in "
                f"data/, so the {split} videos come only from it; it ships with VSPW_480p"
            )
        videos = read_id_list(id_list)
        missing = [v for v in videos if not (data_dir / v / "origin").is_dir()]
        if missing:
            raise DatasetError(
                f"{len(missing)} of {len(videos)} videos listed in {id_list} have no folder "
                f"{data_dir / missing[0] / 'origin'}; re-extract VSPW_480p"
            )
        entries, frames_of = [], {}
        for video in videos:
            frames = list_files(data_dir / video / "origin", "")  # every file, as upstream
            frames_of[video] = len(frames)
            for frame in frames:
                sample_id = f"{video}/origin/{frame}"
                entries.append(Entry(sample_id, data_dir / sample_id, data_dir / self.label_name(sample_id)))
        return Located(entries, base, videos=frames_of)


SPEC = DatasetSpec(
    name="vspw",
    title="VSPW",
    num_classes=124,
    class_names=CLASS_NAMES,
    folder="VSPW_480p",
    markers=(("data", "val.txt"),),
    splits={"val": 343},
    default_split="val",
    typical_image_size=(480, 853),
    count_unit="videos",
    # VSPW has 251,633 frames in 3,536 videos (its paper), ~71 a video (an estimate for the val split)
    images_per_unit=251633 / 3536,
    layout=VSPWLayout(),
    rule=RULE,
    label_encoding="PIL palette indices; 0 (others), 253, 254, 255 ignored, 1..124 -> 0..123",
    usual_ignore_share=0.05,
    sources=(
        Source("upstream", "upstream's packaged VSPW_480p.zip.001-010", (upstream_archive("VSPW_480p.zip", 10),)),
    ),
    manual=(
        "VSPW official data is given on request (https://www.vspwdataset.com/); take VSPW_480p and\n"
        f"  {FROM_COMMAND.format(name='vspw')}   (the archive must unpack to data/ and val.txt)\n"
        f"Or upstream's package: {UPSTREAM_RELEASE}VSPW_480p.zip.001 ... .010"
    ),
    aliases=("vspw_480p",),
)
