"""Regenerate repro/model_zoo.yaml from the two model-zoo documents and upstream's config facts.

Maintainer tool, not used at run time:

    python tools/make_manifest.py ../shared/seeds ../shared/reference/upstream_protocols.json

Every documented row becomes one entry; numbers are taken from the tables as printed, test
settings from upstream's configs (the active block and the commented alternatives).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

RELEASES = "https://github.com/SegmentationBLWX/modelstore/releases/download"
CONFIGS = "https://raw.githubusercontent.com/SegmentationBLWX/sssegmentation/main/ssseg/configs"

DOCUMENTS = {  # seed file -> (method, upstream config prefix, config folder)
    "000_f51dad4bbced29c0.txt": ("mcibi", "mcibi", "mcibi"),
    "003_c25b55a58d9aa87f.txt": ("memorynetv2", "mcibiplusplus", "mcibiplusplus"),
}
DATASETS = {
    "COCOStuff-10k": "cocostuff10k",
    "ADE20k": "ade20k",
    "CityScapes": "cityscapes",
    "LIP": "lip",
    "VSPW": "vspw",
    "PASCAL-VOC": "voc",
    "PASCAL-Context": "pascalcontext59",
}
BACKBONES = {
    "R-50-D8": "resnet50os8",
    "R-101-D8": "resnet101os8",
    "S-101-D8": "resnest101os8",
    "HRNetV2p-W48": "hrnetv2w48",
    "ViT-Large": "vitlarge",
    "Swin-Large": "swinlarge",
}
HEADS = {"DeepLabV3": "aspp", "PSNet": "ppm", "UperNet": "upernet", "FCN": "fcn"}
PROTOCOL_COLUMNS = {"mIoU": "single", "mIoU (flip)": "flip", "mIoU (ms+flip)": "ms+flip"}
LINK = re.compile(r"\[(cfg|model|log)\]\(([^)]*)\)")


def parse_tables(text: str):
    """Yield (section, table heading, header cells, row cells) for every table row."""
    section = heading = None
    header = None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("#### "):
            heading, header = line[5:].strip(), None
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif set("".join(cells)) <= set(":- "):
                continue
            else:
                yield section, heading, header, cells


def protocol_of(block: dict) -> str:
    tta = block["inference"]["tta"]
    if len(tta["multiscale"]) > 1:
        return "ms+flip"
    return "flip" if tta["flip"] else "single"


def protocol_settings(block: dict, flip_pairs) -> dict:
    fwd, tta = block["inference"]["forward"], block["inference"]["tta"]
    steps = {name: args for name, args in block["test_pipeline"]}
    assert list(steps) == ["Resize", "Normalize", "ToTensor"], steps
    return {
        "upstream_block": block["label"],
        "resize": {
            "output_size": list(steps["Resize"]["output_size"]),
            "keep_ratio": steps["Resize"]["keep_ratio"],
        },
        "normalize": {"mean": steps["Normalize"]["mean"], "std": steps["Normalize"]["std"]},
        "mode": fwd["mode"],
        "crop_size": fwd["cropsize"],
        "stride": fwd["stride"],
        "scales": [float(s) for s in tta["multiscale"]],
        "flip": tta["flip"],
        "flip_pairs": [list(p) for p in flip_pairs or []],
        "probs_before_resize": tta["use_probs_before_resize"],
    }


def build_entries(seeds: Path, upstream: dict) -> list[dict]:
    entries = []
    for seed, (method, prefix, folder) in DOCUMENTS.items():
        for section, heading, header, cells in parse_tables((seeds / seed).read_text()):
            col = dict(zip(header, cells))
            dataset = DATASETS[heading]
            head = HEADS[col["Segmentor"]]
            backbone = BACKBONES[col["Backbone"]]
            config = f"{prefix}_{'' if head == 'fcn' else head + '_'}{backbone}_{dataset}"
            if method == "mcibi":
                config = f"mcibi_deeplabv3_{backbone}_{dataset}"
            facts = upstream[config]
            links = {kind: url for kind, url in LINK.findall(col["Download"])}
            # the model link of one row is broken in the document ("model]()"): treat it as empty
            stem_id = f"{method}_{head}_{backbone}_{dataset}"
            model_link = links.get("model", "")
            link_stem = Path(model_link).stem if model_link else None

            miou_header = next(h for h in header if h.startswith("mIoU"))
            names = [PROTOCOL_COLUMNS[h.strip()] for h in re.split(r"/(?=mIoU)", miou_header)]
            raw = col[miou_header]
            values = [float(v.rstrip("%")) for v in raw.split("/")] if raw else [None] * len(names)
            documented = dict(zip(names, values))

            blocks = {}
            for block in facts["protocols"]:
                blocks.setdefault(protocol_of(block), block)
            wanted = list(documented)
            if "single" in blocks and blocks["single"]["label"] == "default" and "single" not in wanted:
                wanted.insert(0, "single")
            protocols = {p: protocol_settings(blocks[p], facts["flip_channel_pairs"]) for p in wanted}

            lr, policy, bs, epochs = col["Schedule"].split(":")[1].strip().split("/")
            train_split, eval_split = col["Train/Eval Set"].split("/")
            crop_h, crop_w = (int(v) for v in col["Crop Size"].split("x"))
            weights = [u for u in [model_link] if u]
            configs = [u for u in [links.get("cfg", "")] if u]
            logs = [u for u in [links.get("log", "")] if u]
            if method == "memorynetv2":
                weights.append(f"{RELEASES}/ssseg_mcibiplusplus/{config}.pth")
                logs.append(f"{RELEASES}/ssseg_mcibiplusplus/{config}.log")
            configs.append(f"{CONFIGS}/{folder}/{config}.py")
            dedupe = lambda urls: list(dict.fromkeys(urls))  # noqa: E731
            entries.append(
                {
                    "id": link_stem if method == "mcibi" else stem_id,
                    "aliases": sorted({config, link_stem} - {None}) if method == "mcibi" else sorted({config, stem_id, link_stem} - {None}),
                    "method": method,
                    "document": seed,
                    "section": section,
                    "table": heading,
                    "segmentor": col["Segmentor"],
                    "head": head,
                    "backbone": col["Backbone"],
                    "backbone_id": backbone,
                    "pretrain": col.get("Pretrain"),
                    "crop_size": [crop_h, crop_w],
                    "schedule": {"lr": float(lr), "policy": policy, "batch_size": int(bs), "epochs": int(epochs)},
                    "dataset": dataset,
                    "train_split": train_split,
                    "eval_split": eval_split,
                    "num_classes": facts["num_classes"],
                    "upstream_config": config,
                    "documented": documented,
                    "protocols": protocols,
                    "weights": dedupe(weights),
                    "config": dedupe(configs),
                    "log": dedupe(logs),
                    "sha256": None,
                    "eval": "server" if (dataset, eval_split) == ("cityscapes", "test") else "local",
                    "notes": [],
                    "_link_stem": link_stem,
                    "_crop_upstream": facts,
                }
            )
    add_notes(entries)
    # a document stem is the id only when unique; otherwise the id is built like the others
    stems = [e["_link_stem"] for e in entries]
    for e in entries:
        if e["method"] == "memorynetv2" and e["_link_stem"] and stems.count(e["_link_stem"]) > 1:
            e["aliases"] = [a for a in e["aliases"] if a != e["_link_stem"]]
        e.pop("_link_stem")
        e.pop("_crop_upstream")
        e["aliases"] = [a for a in e["aliases"] if a != e["id"]]
    return entries


def add_notes(entries: list[dict]) -> None:
    for e in entries:
        notes = e["notes"]
        if e["method"] == "memorynetv2" and any("ssseg_memorynetv2" in u for u in e["weights"]):
            notes.append(
                "MemoryNetV2 was renamed MCIBI++ upstream: the document's ssseg_memorynetv2 links may be "
                "gone; upstream's model zoo now serves ssseg_mcibiplusplus/<config>.pth."
            )
        if all(v is None for v in e["documented"].values()):
            notes.append("The document leaves this row's mIoU cell and download links blank.")
        if e["eval"] == "server":
            notes.append(
                "Trained on train+val and scored on the Cityscapes test split by the official server: "
                "repro writes the submission zip; an mIoU of these checkpoints on val would be contaminated."
            )
        if e["weights"] and e["weights"][0].endswith("memorynetv2_upernet_swinlarge_vspw.pth") and e["dataset"] != "vspw":
            notes.append(
                "The document's model link for this row points to the VSPW checkpoint "
                "(memorynetv2_upernet_swinlarge_vspw.pth, 124 classes); fetch rejects it by class count "
                "and moves on to the next URL."
            )
        if any(u.endswith(".pth") for u in e["log"]):
            notes.append("The document's log link for this row points to the .pth checkpoint, not a log.")
        if e["crop_size"] != [473, 473] and e["dataset"] == "lip" and e["backbone_id"] == "hrnetv2w48" and e["method"] == "memorynetv2":
            notes.append("The document says crop 512x512; the upstream config trains with 473x473 crops.")
        ms = e["protocols"].get("ms+flip")
        if ms and ms["scales"] != [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]:
            notes.append(f"Upstream's ms+flip block for this config uses scales {ms['scales']}.")
        if ms and not ms["probs_before_resize"]:
            notes.append("Upstream's ms+flip block for this config averages logits (use_probs_before_resize False).")
        single = e["protocols"].get("single")
        if ms and single and ms["mode"] != single["mode"]:
            notes.append(f"Upstream's ms+flip block uses {ms['mode']} inference, its single-scale block {single['mode']}.")


class _Dumper(yaml.SafeDumper):
    pass


def _short_lists_flow(dumper, data):
    flow = all(isinstance(x, (int, float, type(None))) or isinstance(x, list) for x in data) and len(str(data)) < 90
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _short_lists_flow)


def main(seeds: str, protocols_json: str, out: str = "repro/model_zoo.yaml") -> None:
    entries = build_entries(Path(seeds), json.loads(Path(protocols_json).read_text()))
    header = (
        "# The MCIBI (ICCV 2021) and MemoryNetV2 / MCIBI++ (TPAMI 2022) model zoo of sssegmentation:\n"
        "# one entry per row of the documents' performance tables, in document order.\n"
        "# Generated by tools/make_manifest.py from the documents and upstream's configs; edit with care.\n"
    )
    body = yaml.dump({"schema_version": 1, "models": entries}, Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True)
    Path(out).write_text(header + body)
    print(f"wrote {len(entries)} entries to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
