"""`repro explain`: why a measured number is what it is, from a result and its evidence sidecar.

`find_result` picks the result file of a row (as the report does: the row's default forward,
the newest), `explain_result` reads it and its evidence (repro.results.evidence) into an `Explanation`
(Δ against the documented and upstream's current number, the conditions, per-class IoU worst
first, the top confusions, the worst images, and the cause checks of repro.explain.checks), and
`explanation_text` prints it for a terminal or a pipe at 80 columns. Pictures: repro.explain.draw.
A result written before evidence existed is explained as far as its JSON allows.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from repro.errors import ReproError, UnknownModelError
from repro.results.evidence import Evidence, load
from repro.explain.checks import Finding, not_checked, run_checks
from repro.manifest import PROTOCOL_NAMES as PROTOCOL_ORDER
from repro.manifest import ordered_protocols
from repro.results.current import partial_note
from repro.results.files import EvalResult, read_result
from repro.text import counted
from repro.text import aligned, clip, two_decimals


@dataclass(frozen=True)
class ClassRow:
    index: int
    name: str
    iou: float | None  # percent; None where undefined
    gt_share: float | None  # fraction of labelled pixels; None without evidence


@dataclass(frozen=True)
class ConfusionRow:
    gt: str
    pred: str
    pixels: int
    share: float  # of the ground-truth class's pixels


@dataclass(frozen=True)
class ImageRow:
    image_id: str
    miou: float  # percent, over the classes in that image (label or prediction)
    wrong: float  # fraction of the image's counted pixels predicted wrongly


@dataclass
class Explanation:
    """Everything `repro explain` says about one result (numbers in percent unless named share)."""

    path: Path
    result: EvalResult
    class_names: list[str]
    evidence: Evidence | None = None
    missing: str | None = None  # why there is no evidence, and the command that records it
    documented: float | None = None
    upstream_now: float | None = None
    delta: float | None = None
    delta_now: float | None = None
    within: bool | None = None
    tolerance: float = 0.1
    documented_protocols: list[str] = field(default_factory=list)
    conditions: list[tuple[str, str]] = field(default_factory=list)
    condition_notes: list[str] = field(default_factory=list)
    classes: list[ClassRow] = field(default_factory=list)  # worst first
    confusions: list[ConfusionRow] = field(default_factory=list)
    worst_images: list[ImageRow] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        r = self.result
        return f"{r.model_id} [{r.protocol}] {r.dataset} {r.split}, {counted(r.num_images, 'image')}"


# ---------------------------------------------------------------------------------------------
# Which result


def _manifest(manifest):
    if manifest is not None:
        return manifest
    from repro.manifest import load_manifest

    return load_manifest()


def row_results(model_id: str, folder: Path) -> list[tuple[Path, EvalResult]]:
    found = []
    for path in sorted(folder.glob(f"{model_id}__*.json")):
        result = read_result(path)
        if result.model_id == model_id:
            found.append((path, result))
    return found


def find_result(target: str | os.PathLike, protocol: str | None = None, results_dir=None, manifest=None) -> Path:
    """The result file for `target`: a path to a result file, or a model id / alias whose row's
    result (default forward first, then the newest) is looked up in the results folder."""
    from repro.paths import results_dir as default_results_dir
    from repro.results.brackets import preferred_precision
    from repro.results.current import choose_result, default_variant

    if protocol is not None and protocol not in PROTOCOL_ORDER:
        raise ReproError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOL_ORDER)}", exit_code=2)
    path = Path(target)
    if path.suffix == ".json" and path.is_file():
        return path
    if path.suffix == ".json":
        raise ReproError(f"result file {path} does not exist")
    entry = _manifest(manifest).get(str(target))
    folder = default_results_dir(results_dir)
    found = row_results(entry.id, folder)
    protocols = ordered_protocols(r.protocol for _, r in found)
    if protocol is None and protocols:
        protocol = protocols[0]
    mine = [(p, r) for p, r in found if r.protocol == protocol]
    if not mine:
        shown = protocol or next(iter(entry.documented), "single")
        others = f" (results exist for {', '.join(protocols)})" if protocols else ""
        raise ReproError(f"no result for {entry.id} [{shown}] in {folder}{others}; "
                         f"run `repro eval {entry.id} --protocol {shown}` first")
    picked, _ = choose_result([r for _, r in mine], default_variant(entry), preferred_precision(entry, protocol))
    return next(p for p, r in mine if r is picked)


# ---------------------------------------------------------------------------------------------
# Building the explanation


def class_names_of(result: EvalResult, num_classes: int | None = None) -> list[str]:
    """The class names in class order: the result's own per-class keys, else the dataset's."""
    names = list(result.per_class_iou)
    if names and (num_classes is None or len(names) == num_classes):
        return names
    try:
        from repro.datasets import DATASETS

        spec = DATASETS[result.dataset]
        if num_classes is None or spec.num_classes == num_classes:
            return list(spec.class_names)
    except KeyError:
        pass
    return [f"class {i}" for i in range(num_classes or 0)]


def rerun_command(result: EvalResult) -> str:
    """The command that re-runs a result and records its evidence."""
    variant = f" --variant {result.variant}" if result.variant != "upstream-head" else ""
    precision = f" --precision {result.precision}" if result.precision != "fp32" else ""
    return f"repro eval {result.model_id} --protocol {result.protocol}{variant}{precision} --force"


def load_evidence(path: Path, result: EvalResult) -> tuple[Evidence | None, str | None]:
    """(the evidence, None) or (None, what is missing and how to record it); a mismatching sha256 raises."""
    if not result.evidence:
        return None, ("no per-image evidence: this result was written before repro recorded it; "
                      f"`{rerun_command(result)}` records it")
    sidecar = path.parent / result.evidence
    if not sidecar.is_file():
        return None, f"its evidence file {result.evidence} is missing; `{rerun_command(result)}` records it again"
    return load(sidecar, result.evidence_sha256), None


def explain_result(path: str | os.PathLike, *, manifest=None, top: int = 10) -> Explanation:
    """Read a result file and its evidence into an Explanation (`top` rows per table)."""
    path = Path(path)
    result = read_result(path)
    evidence, missing = load_evidence(path, result)
    names = class_names_of(result, evidence.num_classes if evidence is not None else None)
    out = Explanation(path=path, result=result, class_names=names, evidence=evidence, missing=missing)
    _compare_to_documents(out, _manifest_row(result, manifest))
    out.conditions = conditions_table(result)
    if evidence is not None and evidence.has_labels:
        _fill_from_evidence(out, evidence, top)
        out.findings = run_checks(evidence, names, result.dataset, result.miou)
        out.unchecked = not_checked(evidence)
    elif evidence is not None:
        out.unchecked = not_checked(evidence)
    else:
        out.classes = _classes_from_json(result)[:top]
    return out


def _manifest_row(result: EvalResult, manifest):
    try:
        return _manifest(manifest).get(result.model_id)
    except UnknownModelError:
        return None


def _compare_to_documents(out: Explanation, entry) -> None:
    """Δ against the documented and upstream's current number, by the report's comparison rule."""
    from repro.results.comparison import DEFAULT_TOLERANCE, compare_result

    out.tolerance = DEFAULT_TOLERANCE
    if entry is None:
        out.condition_notes.append(f"{out.result.model_id} is not in the manifest: no documented number")
        return
    protocol = out.result.protocol
    documented = entry.documented.get(protocol)
    now = getattr(entry, "upstream_now", None)
    now_value = (getattr(now, "documented", None) or {}).get(protocol) if now is not None else None
    out.documented_protocols = [p for p, v in entry.documented.items() if v is not None]
    out.documented = None if documented is None else float(documented)
    out.upstream_now = None if now_value is None else float(now_value)
    compared = compare_result(out.result, documented, out.tolerance)
    if compared is not None:
        out.delta, out.within = float(compared[0]), compared[1]
    compared_now = compare_result(out.result, now_value, out.tolerance)
    if compared_now is not None:
        out.delta_now = float(compared_now[0])
    out.condition_notes.extend(documented_condition_notes(entry, out.result))


def _fill_from_evidence(out: Explanation, evidence: Evidence, top: int) -> None:
    scores = evidence.scores()
    iou, share = scores.iou, scores.gt_share
    rows = [ClassRow(i, out.class_names[i], None if np.isnan(iou[i]) else 100 * float(iou[i]), float(share[i]))
            for i in range(evidence.num_classes)]
    out.classes = sorted((r for r in rows if r.iou is not None), key=lambda r: (r.iou, -r.gt_share))[:top]
    out.confusions = top_confusions(evidence, out.class_names, top)
    out.worst_images = worst_images(evidence, top)


def _classes_from_json(result: EvalResult) -> list[ClassRow]:
    rows = [ClassRow(i, name, value, None) for i, (name, value) in enumerate(result.per_class_iou.items())]
    return sorted((r for r in rows if r.iou is not None), key=lambda r: r.iou)


def top_confusions(evidence: Evidence, class_names, top: int = 10, min_share: float = 1e-4) -> list[ConfusionRow]:
    """Off-diagonal cells by share of their ground-truth class's pixels (classes under `min_share`
    of all labelled pixels left out: a share of a handful of pixels says nothing)."""
    m = evidence.confusion
    gt = m.sum(axis=1)
    total = gt.sum()
    rows = []
    for g, p in zip(*np.nonzero(m)):
        if g != p and gt[g] >= min_share * total:
            rows.append(ConfusionRow(class_names[g], class_names[p], int(m[g, p]), float(m[g, p] / gt[g])))
    rows.sort(key=lambda r: (-r.share, -r.pixels))
    return rows[:top]


def worst_images(evidence: Evidence, top: int = 10) -> list[ImageRow]:
    miou = evidence.image_miou()
    counted = evidence.gt_area.sum(axis=1)
    wrong = np.where(counted > 0, evidence.image_error() / np.maximum(counted, 1), 0.0)
    order = np.argsort(np.where(np.isnan(miou), np.inf, miou), kind="stable")[:top]
    return [ImageRow(str(evidence.image_ids[i]), 100 * float(miou[i]), float(wrong[i])) for i in order
            if not np.isnan(miou[i])]


# ---------------------------------------------------------------------------------------------
# Conditions


def conditions_table(result: EvalResult) -> list[tuple[str, str]]:
    """(name, value) of what a number depends on beyond the protocol."""
    cuda = result.cuda_version or "none"
    rows = [
        ("forward", result.variant), ("precision", result.precision), ("device", result.device),
        ("torch", f"{result.torch_version}, CUDA {cuda}, cuDNN {result.cudnn_version or 'none'}"),
        ("world size", str(result.world_size)),
        ("checkpoint", (result.checkpoint_sha256 or "not recorded")[:16]),
        ("dataset", f"{result.data_root} (fingerprint {(result.dataset_fingerprint or 'not recorded')[:12]})"),
    ]
    if result.status == "partial":
        rows.append(("coverage", f"partial: {partial_note(result)}, never compared"))
    return rows


def documented_condition_notes(entry, result: EvalResult) -> list[str]:
    """How the documented number was most likely measured (the manifest's `documented_conditions`,
    where it has them) and what differs in this run."""
    conditions = (getattr(entry, "documented_conditions", None) or {}).get(result.protocol)
    if conditions is None:
        return ["how the documented number was measured is not recorded in the manifest"]
    summary = conditions.summary() if hasattr(conditions, "summary") else str(conditions)
    notes = [f"documented number measured on: {summary}"]
    from repro.numerics import TF32_BY_PRECISION

    run_conv, run_matmul = TF32_BY_PRECISION.get(result.precision, (False, False))
    for name, documented, here in (("convolutions", getattr(conditions, "tf32_conv", "unknown"), run_conv),
                                   ("matmuls", getattr(conditions, "tf32_matmul", "unknown"), run_matmul)):
        if documented in ("yes", "likely") and not here:
            notes.append(f"TF32 {name}: {documented} for the documented number, off in this {result.precision} run "
                         f"(`--precision {'tf32' if name == 'convolutions' else 'tf32-all'}` measures it that way)")
        elif documented == "no" and here:
            notes.append(f"TF32 {name}: off for the documented number, on in this {result.precision} run")
    gpu = getattr(conditions, "gpu", "unknown")
    if gpu != "unknown" and gpu.lower() not in result.device.lower():
        notes.append(f"GPU: {gpu} for the documented number, {result.device} here")
    return notes


# ---------------------------------------------------------------------------------------------
# Text



def wrap(text: str, width: int, indent: str = "  ", hanging: str = "    ") -> list[str]:
    """Wrapped lines; a `command` in backticks stays on one line (copied from a pipe whole)."""
    text = re.sub(r"`[^`]*`", lambda m: m.group(0).replace(" ", "\0"), text)
    lines = textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=hanging,
                          break_on_hyphens=False, break_long_words=False) or [indent]
    return [line.replace("\0", " ") for line in lines]


def _verdict(x: Explanation) -> str:
    """As the report judges: partial runs and 16-bit precisions are shown, never compared."""
    from repro.numerics import COMPARABLE

    r = x.result
    if r.status != "complete":
        return f", {r.status} run: not compared"
    if r.precision not in COMPARABLE:
        return f", {r.precision}: not compared"
    return "" if x.within is None else (" ok" if x.within else " NOT reproduced")


def _headline(x: Explanation) -> str:
    r = x.result
    if r.miou is None:
        return f"measured: no mIoU ({r.status} run)"
    parts = [f"measured {r.miou:.2f}"]
    if x.documented is not None:
        parts.append(f"documented {x.documented:.2f} (Δ {two_decimals(x.delta, True)}{_verdict(x)})")
    elif x.documented_protocols:
        parts.append(f"no documented number for {r.protocol} (documented: {', '.join(x.documented_protocols)})")
    if x.upstream_now is not None and x.upstream_now != x.documented:
        parts.append(f"upstream now {x.upstream_now:.2f} (Δ {two_decimals(x.delta_now, True)})")
    return "; ".join(parts)




_RUN_KEYS = ("forward", "precision", "device", "torch", "world size")


def explanation_text(x: Explanation, width: int = 80) -> str:
    """The explanation for people: plain text, no colour, lines within `width` where words allow."""
    lines = [x.title, *wrap(_headline(x), width)]
    lines += wrap("run: " + ", ".join(f"{k} {v}" for k, v in x.conditions if k in _RUN_KEYS), width)
    lines += [line for key, value in x.conditions if key not in _RUN_KEYS for line in wrap(f"{key}: {value}", width)]
    lines += [line for note in x.condition_notes for line in wrap(note, width)]
    lines += wrap(f"result: {x.path}", width)
    if x.missing:
        lines += ["", *wrap(x.missing, width, indent="", hanging="  ")]
    if x.findings:
        lines += ["", "Likely causes"] + [line for f in x.findings for line in wrap(f"! {f.line}", width)]
    elif x.evidence is not None and x.evidence.has_labels:
        lines += ["", "Likely causes: none of the checks fired"]
    lines += [line for note in x.unchecked for line in wrap(f"(not checked: {note})", width)]
    lines += _class_section(x) + _confusion_section(x) + _image_section(x)
    return "\n".join(lines) + "\n"


def _class_section(x: Explanation) -> list[str]:
    if not x.classes:
        return []
    with_share = x.classes[0].gt_share is not None
    head = ["class", "IoU"] + (["share of labels"] if with_share else [])
    rows = [head] + [[clip(c.name, 28), two_decimals(c.iou)] + ([f"{100 * c.gt_share:.2f}%"] if with_share else [])
                     for c in x.classes]
    return ["", f"Per-class IoU, worst first ({len(x.classes)} shown)", *aligned(rows, "lrr", indent='  ')]


def _confusion_section(x: Explanation) -> list[str]:
    if not x.confusions:
        return []
    rows = [["label", "", "predicted", "share of label"]]
    rows += [[clip(c.gt, 24), "->", clip(c.pred, 24), f"{100 * c.share:.1f}%"] for c in x.confusions]
    return ["", "Top confusions", *aligned(rows, "lllr", indent='  ')]


def _image_section(x: Explanation) -> list[str]:
    if not x.worst_images:
        return []
    rows = [["image", "mIoU", "wrong pixels"]]
    rows += [[clip(i.image_id, 54), two_decimals(i.miou), f"{100 * i.wrong:.1f}%"] for i in x.worst_images]
    return ["", "Worst images by per-image mIoU", *aligned(rows, "lrr", indent='  ')]


def explanation_json(x: Explanation) -> str:
    """The explanation for scripts (numbers in percent, shares as fractions)."""
    r = x.result
    data = {
        "result": str(x.path), "model_id": r.model_id, "protocol": r.protocol, "dataset": r.dataset,
        "split": r.split, "miou": r.miou, "documented": x.documented, "delta": x.delta, "within": x.within,
        "upstream_now": x.upstream_now, "delta_upstream_now": x.delta_now, "tolerance": x.tolerance,
        "conditions": dict(x.conditions), "condition_notes": x.condition_notes,
        "evidence": x.evidence is not None, "missing": x.missing,
        "findings": [asdict(f) for f in x.findings], "not_checked": x.unchecked,
        "classes": [asdict(c) for c in x.classes], "confusions": [asdict(c) for c in x.confusions],
        "worst_images": [asdict(i) for i in x.worst_images],
    }
    return json.dumps(data, indent=2) + "\n"
