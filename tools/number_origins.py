"""When did upstream first print each documented number? Read from upstream's git history.

Maintainer tool, not used at run time (make_manifest.py reads its output):

    python tools/number_origins.py UPSTREAM_GIT_DIR [repro/model_zoo.yaml] > tools/number_origins.json

UPSTREAM_GIT_DIR is a clone (bare or not) of github.com/SegmentationBLWX/sssegmentation. For every
(row, protocol) of the manifest, at the document's commit and at its upstream_now commit, the
model-zoo README's history is walked back (through its renames) while the cell keeps its value:
the oldest commit of that streak is where the number appeared. Each record says whether that
commit already contains upstream's f2650a08 (2023-05-29, "disable tf32"), after which
ssseg/test.py evaluates in full fp32.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

TF32_OFF_COMMIT = "f2650a08"
DOCUMENT_COMMITS = {  # method -> the upstream commit each seed document was taken at
    "mcibi": "a35c5ee6",
    "memorynetv2": "e9ef7509",
}
README_PATHS = {  # method -> the model-zoo README's paths over time (renames)
    "mcibi": ("docs/modelzoo/mcibi/README.md", "docs/modelzoo/memorynet/README.md",
              "docs/performances/memorynet/README.md"),
    "memorynetv2": ("docs/modelzoo/mcibiplusplus/README.md", "docs/modelzoo/memorynetv2/README.md",
                    "docs/performances/memorynetv2/README.md"),
}
PROTOCOL_COLUMNS = {"mIoU": "single", "mIoU (flip)": "flip", "mIoU (ms+flip)": "ms+flip"}
DATASET_HEADINGS = ("COCOStuff-10k", "ADE20k", "CityScapes", "LIP", "VSPW", "PASCAL-VOC", "PASCAL-Context")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def path_at(repo: Path, commit: str, method: str) -> str:
    for path in README_PATHS[method]:
        if subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{commit}:{path}"],
                          capture_output=True).returncode == 0:
            return path
    raise SystemExit(f"no model-zoo README of {method} at {commit}")


def history(repo: Path, commit: str, method: str) -> list[tuple[str, str, str]]:
    """(commit, date, path) of every change of the README up to `commit`, newest first."""
    out = git(repo, "log", "--follow", "--name-status", "--format=C %h %ad", "--date=short", commit,
              "--", path_at(repo, commit, method))
    versions, current = [], None
    for line in out.splitlines():
        if line.startswith("C "):
            current = line.split()[1:3]
        elif line.strip() and current:
            versions.append((current[0], current[1], line.split("\t")[-1]))
            current = None
    return versions


def cells(text: str) -> dict[tuple[str, str, str], dict[str, str]]:
    """(table heading, segmentor, backbone) -> {protocol: cell text} of every table row."""
    rows, heading, header = {}, None, None
    for line in text.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip()
            heading = title if title in DATASET_HEADINGS else heading
            header = None
        elif line.startswith("|") and heading:
            parts = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = parts
                continue
            if set("".join(parts)) <= set(":- "):
                continue
            column = dict(zip(header, parts))
            miou = next((h for h in header if h.startswith("mIoU")), None)
            if miou is None:
                continue
            names = [PROTOCOL_COLUMNS.get(h.strip(), h.strip()) for h in re.split(r"/(?=mIoU)", miou)]
            values = column[miou].split("/") if column[miou] else [""] * len(names)
            segmentor = column.get("Segmentor", column.get("Model"))
            rows[(heading, segmentor, column["Backbone"])] = dict(zip(names, values))
    return rows


def origin(repo: Path, versions, tables, key, protocol) -> dict | None:
    """The oldest version in the newest run of versions where the cell has today's value."""
    value = tables[0].get(key, {}).get(protocol)
    if not value:
        return None
    found = 0
    for index in range(1, len(versions)):
        if tables[index].get(key, {}).get(protocol) != value:
            break
        found = index
    commit, date, path = versions[found]
    tf32_off = subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", TF32_OFF_COMMIT, commit],
                              capture_output=True).returncode == 0
    return {"cell": value, "commit": commit, "date": date, "file": path, "after_tf32_off": tf32_off}


def origins_at(repo: Path, commit: str, method: str, cache: dict) -> tuple[list, list]:
    if (commit, method) not in cache:
        versions = history(repo, commit, method)
        tables = [cells(git(repo, "show", f"{c}:{p}")) for c, _, p in versions]
        cache[(commit, method)] = (versions, tables)
    return cache[(commit, method)]


def main(repo: str, manifest: str = "repro/model_zoo.yaml") -> None:
    repo_path, cache, out = Path(repo), {}, {}
    for entry in yaml.safe_load(Path(manifest).read_text())["models"]:
        key = (entry["table"], entry["segmentor"], entry["backbone"])
        record = {}
        targets = [("documented", DOCUMENT_COMMITS[entry["method"]], entry["documented"])]
        if entry.get("upstream_now"):
            targets.append(("upstream_now", entry["upstream_now"]["commit"], entry["upstream_now"]["documented"]))
        for field, commit, numbers in targets:
            versions, tables = origins_at(repo_path, commit, entry["method"], cache)
            found = {}
            for protocol, number in numbers.items():
                if number is None:
                    continue
                where = origin(repo_path, versions, tables, key, protocol)
                if where is None or float(where["cell"].rstrip("%")) != number:
                    raise SystemExit(f"{entry['id']} {field} {protocol}: {number} not found at {commit}")
                found[protocol] = where
            record[field] = found
        out[entry["id"]] = record
    sys.stdout.write(render(out))


def render(origins: dict) -> str:
    """JSON with one line per number (diffs stay readable)."""
    rows = []
    for model_id, record in origins.items():
        fields = []
        for field, numbers in record.items():
            lines = ",\n".join(f"   {json.dumps(p)}: {json.dumps(w)}" for p, w in numbers.items())
            fields.append(f"  {json.dumps(field)}: {{\n{lines}\n  }}" if lines else f"  {json.dumps(field)}: {{}}")
        rows.append(f" {json.dumps(model_id)}: {{\n" + ",\n".join(fields) + "\n }")
    return "{\n" + ",\n".join(rows) + "\n}\n"


if __name__ == "__main__":
    main(*sys.argv[1:])
