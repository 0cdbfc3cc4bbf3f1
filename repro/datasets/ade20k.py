"""ADE20k (SceneParsing, ADEChallengeData2016): 150 classes, evaluated on val (2000 images)."""

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
    require_dir,
)
from repro.datasets.palettes import ADE20K_COLOURS
from repro.datasets.sources import FROM_COMMAND, UPSTREAM_RELEASE, Archive, Source, upstream_archive
from repro.errors import DatasetError

CLASS_NAMES = (
    'wall', 'building, edifice', 'sky', 'floor, flooring', 'tree', 'ceiling', 'road, route',
    'bed', 'windowpane, window', 'grass', 'cabinet', 'sidewalk, pavement',
    'person, individual, someone, somebody, mortal, soul', 'earth, ground', 'door, double door',
    'table', 'mountain, mount', 'plant, flora, plant life',
    'curtain, drape, drapery, mantle, pall', 'chair',
    'car, auto, automobile, machine, motorcar', 'water', 'painting, picture',
    'sofa, couch, lounge', 'shelf', 'house', 'sea', 'mirror', 'rug, carpet, carpeting', 'field',
    'armchair', 'seat', 'fence, fencing', 'desk', 'rock, stone', 'wardrobe, closet, press',
    'lamp', 'bathtub, bathing tub, bath, tub', 'railing, rail', 'cushion',
    'base, pedestal, stand', 'box', 'column, pillar', 'signboard, sign',
    'chest of drawers, chest, bureau, dresser', 'counter', 'sand', 'sink', 'skyscraper',
    'fireplace, hearth, open fireplace', 'refrigerator, icebox', 'grandstand, covered stand',
    'path', 'stairs, steps', 'runway', 'case, display case, showcase, vitrine',
    'pool table, billiard table, snooker table', 'pillow', 'screen door, screen',
    'stairway, staircase', 'river', 'bridge, span', 'bookcase', 'blind, screen',
    'coffee table, cocktail table', 'toilet, can, commode, crapper, pot, potty, stool, throne',
    'flower', 'book', 'hill', 'bench', 'countertop',
    'stove, kitchen stove, range, kitchen range, cooking stove', 'palm, palm tree',
    'kitchen island',
    'computer, computing machine, computing device, data processor, electronic computer, information processing system',
    'swivel chair', 'boat', 'bar', 'arcade machine', 'hovel, hut, hutch, shack, shanty',
    'bus, autobus, coach, charabanc, double-decker, jitney, motorbus, motorcoach, omnibus, passenger vehicle',
    'towel', 'light, light source', 'truck, motortruck', 'tower',
    'chandelier, pendant, pendent', 'awning, sunshade, sunblind', 'streetlight, street lamp',
    'booth, cubicle, stall, kiosk',
    'television receiver, television, television set, tv, tv set, idiot box, boob tube, telly, goggle box',
    'airplane, aeroplane, plane', 'dirt track', 'apparel, wearing apparel, dress, clothes',
    'pole', 'land, ground, soil', 'bannister, banister, balustrade, balusters, handrail',
    'escalator, moving staircase, moving stairway', 'ottoman, pouf, pouffe, puff, hassock',
    'bottle', 'buffet, counter, sideboard', 'poster, posting, placard, notice, bill, card',
    'stage', 'van', 'ship', 'fountain',
    'conveyer belt, conveyor belt, conveyer, conveyor, transporter', 'canopy',
    'washer, automatic washer, washing machine', 'plaything, toy',
    'swimming pool, swimming bath, natatorium', 'stool', 'barrel, cask', 'basket, handbasket',
    'waterfall, falls', 'tent, collapsible shelter', 'bag', 'minibike, motorbike', 'cradle',
    'oven', 'ball', 'food, solid food', 'step, stair', 'tank, storage tank',
    'trade name, brand name, brand, marque', 'microwave, microwave oven', 'pot, flowerpot',
    'animal, animate being, beast, brute, creature, fauna', 'bicycle, bike, wheel, cycle',
    'lake', 'dishwasher, dish washer, dishwashing machine',
    'screen, silver screen, projection screen', 'blanket, cover', 'sculpture',
    'hood, exhaust hood', 'sconce', 'vase', 'traffic light, traffic signal, stoplight', 'tray',
    'ashcan, trash can, garbage can, wastebin, ash bin, ash-bin, ashbin, dustbin, trash barrel, trash bin',
    'fan', 'pier, wharf, wharfage, dock', 'crt screen', 'plate', 'monitor, monitoring device',
    'bulletin board, notice board', 'shower', 'radiator', 'glass, drinking glass', 'clock',
    'flag',
)


BAD_VALUE_TEXT = (
    "ADEChallengeData2016 labels hold 0..150 only; values above 150 suggest the full ADE20K "
    "dataset (not SceneParsing) or colour-coded masks: use ADEChallengeData2016.zip or upstream's ADE20k.tar.gz"
)


RULE = LabelRule(reader="cv2", num_classes=150, table=reduce_zero_table(150), bad_value_text=BAD_VALUE_TEXT)

# upstream's split name -> folder name under images/ and annotations/
_SPLIT_FOLDERS = {"train": "training", "val": "validation", "test": "testing"}


class ADE20kLayout(DatasetLayout):
    """Packaged: <root>/ADEChallengeData2016/{images,annotations}/<folder>, id list
    ADEChallengeData2016/<split>.txt. Official zip unpacked directly: root = ADEChallengeData2016."""

    def label_name(self, sample_id: str) -> str:
        return f"{sample_id}.png"

    def locate(self, root: Path, split: str) -> Located:
        for base in (root / "ADEChallengeData2016", root):
            if (base / "images").is_dir() and (base / "annotations").is_dir():
                break
        else:
            raise DatasetError(
                f"no ADE20k layout under {root}: expected ADEChallengeData2016/images and "
                f"ADEChallengeData2016/annotations; pass the folder that ADE20k.tar.gz unpacks to "
                f"(or the unpacked ADEChallengeData2016 folder) as the root"
            )
        folder = _SPLIT_FOLDERS[split]
        fix = "re-extract ADEChallengeData2016.zip / ADE20k.tar.gz"
        image_dir = require_dir(base / "images" / folder, f"ADE20k {split} images", fix)
        ann_dir = base / "annotations" / folder
        if SPEC.has_labels(split):
            require_dir(ann_dir, f"ADE20k {split} annotations", fix)
        notes = []
        id_list = base / f"{split}.txt"
        if id_list.is_file():
            ids = read_id_list(id_list)
        else:
            ids = [name[: -len(".jpg")] for name in list_files(image_dir, ".jpg")]
            notes.append(
                f"ADE20k: no id list {id_list} (upstream's packaged archive has one); "
                f"using the {len(ids)} .jpg files in {image_dir}, sorted"
            )
        entries = [Entry(i, image_dir / f"{i}.jpg", ann_dir / self.label_name(i)) for i in ids]
        return Located(entries, base, notes)


_OFFICIAL_ZIP = "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"

SPEC = DatasetSpec(
    name="ade20k",
    title="ADE20k",
    num_classes=150,
    class_names=CLASS_NAMES,
    folder="ADE20k",
    markers=(
        ("ADEChallengeData2016/images", "ADEChallengeData2016/annotations"),
        ("images/validation", "annotations/validation"),  # the official zip's folder itself
    ),
    splits={"val": 2000},
    default_split="val",
    typical_image_size=(512, 683),
    layout=ADE20kLayout(),
    rule=RULE,
    label_encoding="cv2 grayscale PNG; 0 ignored, 1..150 -> 0..149 (reduce zero label)",
    usual_ignore_share=0.10,
    wrong_encoding_hint="labels not in ADEChallengeData2016's 0..150 numbering",
    colours=ADE20K_COLOURS,
    sources=(
        Source("upstream", "upstream's packaged ADE20k.tar.gz", (upstream_archive("ADE20k.tar.gz"),)),
        Source("official", "the official SceneParsing challenge zip (MIT)", (Archive((_OFFICIAL_ZIP,)),)),
    ),
    manual=(
        "ADE20k (SceneParsing-150, val = 2000 images) is public; either file works:\n"
        f"  {UPSTREAM_RELEASE}ADE20k.tar.gz (upstream's package, with id lists)\n"
        f"  {_OFFICIAL_ZIP} (official)\n"
        f"then: {FROM_COMMAND.format(name='ade20k')}"
    ),
    aliases=("ade", "adechallengedata2016"),
)
