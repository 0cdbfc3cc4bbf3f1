"""`repro diff A B`: what changed between two runs of one row and protocol.

Typical pairs: the training-era vs the upstream-head forward, fp32 vs another precision, two
machines, one GPU vs eight. From the two results and their evidence sidecars: Δ mIoU (B - A),
per-class Δ largest first, the images whose per-image mIoU moved most, the share of pixels
predicted alike where both runs saved their predictions, and the conditions that differ.
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from repro.errors import ReproError
from repro.results.evidence import Evidence
from repro.explain.explanation import class_names_of, load_evidence
from repro.results.files import EvalResult, read_result
from repro.text import counted
from repro.text import aligned, clip, two_decimals


@dataclass
class Side:
    path: Path
    result: EvalResult
    evidence: Evidence | None
    missing: str | None


@dataclass(frozen=True)
class ClassDelta:
    name: str
    a: float | None  # IoU in percent
    b: float | None
    delta: float | None


@dataclass(frozen=True)
class ImageDelta:
    image_id: str
    a: float  # per-image mIoU in percent
    b: float
    delta: float


@dataclass
class Diff:
    a: Side
    b: Side
    delta_miou: float | None = None
    classes: list[ClassDelta] = field(default_factory=list)
    images: list[ImageDelta] = field(default_factory=list)
    agreement: float | None = None  # share of pixels predicted alike (saved predictions of both)
    agreement_images: int = 0
    conditions: list[tuple[str, str, str]] = field(default_factory=list)  # (what, A, B) that differ
    notes: list[str] = field(default_factory=list)


def _side(path: Path, result: EvalResult) -> Side:
    evidence, missing = load_evidence(path, result)
    return Side(path, result, evidence, missing)


def _same_row(a: EvalResult, b: EvalResult) -> None:
    if (a.model_id, a.protocol) != (b.model_id, b.protocol):
        raise ReproError(
            f"A is {a.model_id} [{a.protocol}], B is {b.model_id} [{b.protocol}]: "
            "diff compares two runs of one row and protocol", exit_code=2,
        )


def diff_results(path_a: str | Path, path_b: str | Path, *, top: int = 10) -> Diff:
    """Compare two result files of one row and protocol (ReproError exit 2 otherwise)."""
    result_a, result_b = read_result(path_a), read_result(path_b)
    _same_row(result_a, result_b)
    a, b = _side(Path(path_a), result_a), _side(Path(path_b), result_b)
    out = Diff(a, b, conditions=differing_conditions(a.result, b.result))
    if a.result.miou is not None and b.result.miou is not None:
        out.delta_miou = b.result.miou - a.result.miou
    out.classes = class_deltas(a, b)[:top]
    labelled = [s for s in (a, b) if s.evidence is not None and s.evidence.has_labels]
    if len(labelled) == 2:
        out.images = image_deltas(a.evidence, b.evidence)[:top]
    else:
        out.notes += [f"{name}: {s.missing}" for name, s in (("A", a), ("B", b)) if s.missing]
    _pixel_agreement(out)
    return out


def class_deltas(a: Side, b: Side) -> list[ClassDelta]:
    """Per-class IoU of both runs (from the evidence, else the JSON), largest |Δ| first."""
    def ious(side: Side) -> dict[str, float | None]:
        if side.evidence is not None and side.evidence.has_labels:
            names = class_names_of(side.result, side.evidence.num_classes)
            return {n: (None if math.isnan(v) else 100 * float(v)) for n, v in zip(names, side.evidence.scores().iou)}
        return dict(side.result.per_class_iou)

    ia, ib = ious(a), ious(b)
    rows = []
    for name in dict.fromkeys([*ia, *ib]):
        va, vb = ia.get(name), ib.get(name)
        if va is None and vb is None:  # in neither run's labels nor predictions
            continue
        rows.append(ClassDelta(name, va, vb, None if va is None or vb is None else vb - va))
    # a class in one run only changes which classes the mean runs over: those first
    return sorted(rows, key=lambda r: (r.delta is not None, -abs(r.delta or 0.0)))


def image_deltas(a: Evidence, b: Evidence) -> list[ImageDelta]:
    """Per-image mIoU of the images both runs saw, largest |Δ| first."""
    common, ia, ib = np.intersect1d(a.image_ids, b.image_ids, return_indices=True)
    ma, mb = a.image_miou()[ia], b.image_miou()[ib]
    rows = [ImageDelta(str(i), 100 * float(x), 100 * float(y), 100 * float(y - x))
            for i, x, y in zip(common, ma, mb) if not (np.isnan(x) or np.isnan(y))]
    return sorted(rows, key=lambda r: (-abs(r.delta), r.image_id))


def _predictions(result: EvalResult, path: Path) -> Path | None:
    if not result.predictions_dir:
        return None
    folder = Path(result.predictions_dir).expanduser()
    folder = folder if folder.is_absolute() else path.parent / folder
    return folder if folder.is_dir() else None


def _pixel_agreement(out: Diff) -> None:
    """Share of pixels both runs predicted alike, over the images both saved (the same PNG path)."""
    fa, fb = _predictions(out.a.result, out.a.path), _predictions(out.b.result, out.b.path)
    if fa is None or fb is None:
        missing = [n for n, f in (("A", fa), ("B", fb)) if f is None]
        out.notes.append(f"pixel agreement: {' and '.join(missing)} saved no predictions "
                         "(`repro eval ... --save-predictions DIR` records them)")
        return
    from PIL import Image

    same = total = images = 0
    for file_a in sorted(fa.rglob("*.png")):
        relative = file_a.relative_to(fa)
        file_b = fb / relative
        if relative.parts[0] == "paint" or not file_b.is_file():  # --paint's colour PNGs: not classes
            continue
        with Image.open(file_a) as ia, Image.open(file_b) as ib:
            pa, pb = np.asarray(ia), np.asarray(ib)
        if pa.shape != pb.shape:
            continue
        same += int((pa == pb).sum())
        total += pa.size
        images += 1
    if total:
        out.agreement, out.agreement_images = same / total, images
    else:
        out.notes.append("pixel agreement: the two prediction folders share no image")


def _condition_text(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    return str(value)


CONDITIONS = (  # (what, how to read it from a result)
    ("checkpoint sha256", lambda r: r.checkpoint_sha256),
    ("dataset fingerprint", lambda r: r.dataset_fingerprint),
    ("dataset folder", lambda r: r.data_root),
    ("images", lambda r: r.num_images),
    ("variant", lambda r: r.variant),
    ("precision", lambda r: r.precision),
    ("device", lambda r: r.device),
    ("torch", lambda r: r.torch_version),
    ("CUDA", lambda r: r.cuda_version),
    ("cuDNN", lambda r: r.cudnn_version),
    ("engine", lambda r: r.engine),
    ("world size", lambda r: r.world_size),
    ("protocol settings", lambda r: json.dumps(r.settings, sort_keys=True)),
    ("repro version", lambda r: r.repro_version),
    ("git commit", lambda r: r.git_commit),
)


def differing_conditions(a: EvalResult, b: EvalResult) -> list[tuple[str, str, str]]:
    rows = []
    for what, read in CONDITIONS:
        va, vb = read(a), read(b)
        if va != vb:
            if what == "protocol settings":  # too long to print: name the fields
                keys = sorted(k for k in {*a.settings, *b.settings} if a.settings.get(k) != b.settings.get(k))
                va, vb = f"differ in {', '.join(keys)}", ""
            rows.append((what, _condition_text(va), _condition_text(vb)))
    return rows


# ---------------------------------------------------------------------------------------------
# Output





def _wrapped_table(rows: list[list[str]], value_width: int) -> list[str]:
    """Like `_table` (left-aligned), but the value columns (all but the first) wrap at
    `value_width` instead of being cut: a differing value is shown whole, however long."""
    pieces = [[cell] if i == 0 else textwrap.wrap(cell, value_width, break_on_hyphens=False) or [""]
              for row in rows for i, cell in enumerate(row)]
    columns = len(rows[0])
    widths = [max(len(line) for cell in pieces[i::columns] for line in cell) for i in range(columns)]
    lines = []
    for r in range(len(rows)):
        cells = pieces[r * columns:(r + 1) * columns]
        for k in range(max(map(len, cells))):
            parts = [(cell[k] if k < len(cell) else "").ljust(w) for cell, w in zip(cells, widths)]
            lines.append(("  " + "  ".join(parts)).rstrip())
    return lines


def _class_change(c: ClassDelta) -> str:
    if c.delta is not None:
        return two_decimals(c.delta, True)
    return "A only" if c.b is None else "B only"


def diff_text(d: Diff, width: int = 80) -> str:
    ra, rb = d.a.result, d.b.result
    lines = [f"{ra.model_id} [{ra.protocol}]", f"  A: {d.a.path}", f"  B: {d.b.path}"]
    lines.append(f"  mIoU A {two_decimals(ra.miou)}, B {two_decimals(rb.miou)}, Δ (B - A) {two_decimals(d.delta_miou, True)}")
    if d.agreement is not None:
        lines.append(f"  pixels predicted alike: {100 * d.agreement:.3f}% over {counted(d.agreement_images, 'image')}")
    lines += [f"  {note}" for note in d.notes]
    if d.conditions:
        rows = [["what differs", "A", "B"]] + [list(condition) for condition in d.conditions]
        what_width = max(len(row[0]) for row in rows)
        value_width = max(12, (width - what_width - 6) // 2)  # 2 + what + 2 + A + 2 + B fit `width`
        lines += ["", "Conditions", *_wrapped_table(rows, value_width)]
    else:
        lines += ["", "Conditions: the same in everything recorded"]
    if d.classes:
        rows = [["class", "A", "B", "Δ"]] + [[clip(c.name, 34), two_decimals(c.a), two_decimals(c.b), _class_change(c)]
                                           for c in d.classes]
        lines += ["", "Per-class IoU, largest change first (classes in one run only first)", *aligned(rows, "lrrr", indent='  ')]
    if d.images:
        rows = [["image", "A", "B", "Δ"]] + [[clip(i.image_id, 44), two_decimals(i.a), two_decimals(i.b), two_decimals(i.delta, True)]
                                           for i in d.images]
        lines += ["", "Images whose mIoU moved most", *aligned(rows, "lrrr", indent='  ')]
    return "\n".join(lines) + "\n"


def diff_json(d: Diff) -> str:
    """The diff for scripts (numbers in percent, Δ = B - A)."""
    def side(s: Side) -> dict:
        return {"path": str(s.path), "miou": s.result.miou, "evidence": s.evidence is not None, "missing": s.missing}

    data = {
        "model_id": d.a.result.model_id, "protocol": d.a.result.protocol, "a": side(d.a), "b": side(d.b),
        "delta_miou": d.delta_miou, "pixel_agreement": d.agreement, "pixel_agreement_images": d.agreement_images,
        "conditions": [{"what": w, "a": x, "b": y} for w, x, y in d.conditions],
        "classes": [asdict(c) for c in d.classes], "images": [asdict(i) for i in d.images], "notes": d.notes,
    }
    return json.dumps(data, indent=2) + "\n"
