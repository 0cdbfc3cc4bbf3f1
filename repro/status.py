"""What is there for each model: checkpoint, dataset, results (`repro status`).

Cheap by design, so that it can be run any time: no torch, no checkpoint loading, no label
reads. A checkpoint counts as "cached" when its file has the size recorded in
checkpoints.lock.json when `repro fetch` accepted it (sha256 checked then); `verify=True`
re-hashes the files. A dataset counts as "complete" when its evaluation split lists the
official number of images and every listed image (and label) file exists. A result is "stale"
when `repro.results.same_evaluation` (the rule the engine, the plan and the launcher use) finds it
differs from what `repro eval ID` would measure now: other protocol settings, another forward than
the row's default variant, another precision than fp32, another checkpoint sha256 than the cached
one, and for a subset result another image count in the dataset folder. (Status does not compare
the dataset's folder path: results copied from another machine stay valid.) When several files hold results of one
(model, protocol), `choose_result` picks the current one and the others are listed.

    statuses = model_statuses(["mcibi_deeplabv3_r50_ade20k"])   # all models without ids
    print(render_table(statuses)) / status_json(statuses)
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro.results.brackets import preferred_precision
from repro.errors import ReproError
from repro.manifest import ordered_protocols
from repro.results.current import choose_result, default_variant, partial_note, result_variant
from repro.results.files import read_results_tolerant
from repro.fetch.cache import (  # the one checkpoint check, shared with eval's resolve_checkpoint
    CKPT_CACHED, CKPT_MISSING, USABLE, CheckpointStatus, checkpoint_status, read_lock_file,
)
from repro.text import counted

if TYPE_CHECKING:  # only for type hints
    from repro.manifest import Manifest, ModelEntry
    from repro.results.files import EvalResult

# Dataset states.
DATA_MISSING = "missing"
DATA_COMPLETE = "complete"
DATA_INCOMPLETE = "incomplete"

# Result states, per protocol.
RESULT_COMPLETE = "complete"
RESULT_PARTIAL = "partial"
RESULT_STALE = "stale"
RESULT_SERVER = "server"
RESULT_NOT_RUN = "not run"
RESULT_MARKS = {RESULT_NOT_RUN: "—"}  # how the table shows a state (the state itself otherwise)


@dataclass
class DatasetStatus:
    dataset: str
    title: str
    split: str
    root: str
    state: str
    detail: str
    count: int | None = None
    expected: int | None = None
    unit: str = "images"


@dataclass
class ProtocolStatus:
    protocol: str
    state: str
    detail: str = ""
    documented: float | None = None
    miou: float | None = None  # percent, as the result file has it
    variant: str | None = None
    result_file: str | None = None  # the current file of this (model, protocol)
    other_files: list[str] = field(default_factory=list)  # other results of it (partial, other precision, ...)


@dataclass
class ModelStatus:
    model_id: str
    dataset: str
    split: str
    default_variant: str
    checkpoint: CheckpointStatus
    data: DatasetStatus
    protocols: list[ProtocolStatus] = field(default_factory=list)


@dataclass
class StatusReport:
    """Everything `repro status` shows; `to_dict()` is the JSON form."""

    models: list[ModelStatus]
    results_dir: str
    checkpoints_dir: str
    notes: list[str] = field(default_factory=list)  # e.g. unreadable result files

    @property
    def datasets(self) -> list[DatasetStatus]:
        """The datasets of the models, each (dataset, split) once, in first-use order."""
        seen: dict[tuple[str, str], DatasetStatus] = {}
        for model in self.models:
            seen.setdefault((model.dataset, model.split), model.data)
        return list(seen.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "results_dir": self.results_dir,
            "checkpoints_dir": self.checkpoints_dir,
            "datasets": [asdict(d) for d in self.datasets],
            "models": [
                {**{k: v for k, v in asdict(m).items() if k != "data"}, "dataset_state": m.data.state}
                for m in self.models
            ],
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------------- dataset


def dataset_status(name: str, split: str, data_root: str | os.PathLike | None = None,
                   dataset_roots: Mapping[str, str | os.PathLike] | None = None) -> DatasetStatus:
    """Is one split of a dataset there and complete? Counts and file existence only, no reads."""
    from repro.datasets.base import missing_file_problems
    from repro.datasets.registry import get_spec
    from repro.datasets.roots import dataset_place, missing_dataset_message, resolve_dataset_root
    from repro.errors import DatasetError

    spec = get_spec(name)
    expected = spec.splits.get(split)
    try:
        root = resolve_dataset_root(name, data_root, dataset_roots)  # honours $REPRO_DATA_<NAME> too
    except ReproError as err:  # e.g. two candidate folders: a detail of this dataset, not a failure
        place = str(dataset_place(name, data_root, dataset_roots))
        return DatasetStatus(name, spec.title, split, place, DATA_MISSING, str(err), None, expected, spec.count_unit)
    found = DatasetStatus(name, spec.title, split, str(root), DATA_MISSING, "", None, expected, spec.count_unit)
    if not root.is_dir():
        found.detail = missing_dataset_message(name, root)
        return found
    found.state = DATA_INCOMPLETE
    check = f"repro data check {name}"
    try:
        located = spec.layout.locate(root, split)
    except DatasetError as err:
        found.detail = f"{err} ({check})"
        return found
    size = spec.size(split, located)
    found.count = size.found
    problems = missing_file_problems(located, spec.has_labels(split), spec.title) if located.entries else []
    if not size.complete:
        found.detail = f"{found.count} of {expected} {spec.count_unit} in {root} ({check})"
    elif problems:
        found.detail = f"{problems[0].split(';')[0]} ({check})"
    else:
        found.state = DATA_COMPLETE
        found.detail = f"{found.count} {spec.count_unit} in {root}"
    return found


# ------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class _Now:
    """What `repro eval ID` would use now, as far as status knows it cheaply."""

    cached_sha256: str | None  # the cached checkpoint's recorded digest (None: not cached)
    folder_images: int | None  # images in the dataset folder (None: not there, or counted in videos)


def _protocol_status(
    entry: ModelEntry, protocol: str, candidates: list[tuple[Path, EvalResult]], now: _Now
) -> ProtocolStatus:
    documented = entry.documented.get(protocol)
    if not candidates:
        return ProtocolStatus(protocol, RESULT_NOT_RUN, documented=documented)
    files = {id(result): path for path, result in candidates}
    result, _ = choose_result([r for _, r in candidates], default_variant(entry), preferred_precision(entry, protocol))
    others = sorted(str(path) for path, other in candidates if other is not result)
    found = ProtocolStatus(protocol, RESULT_COMPLETE, "", documented, result.miou, result_variant(result),
                           str(files[id(result)]), others)
    if result.status == "server":
        found.state, found.detail = RESULT_SERVER, f"submission {result.submission}" if result.submission else ""
    elif result.status == "partial":
        found.state, found.detail = RESULT_PARTIAL, partial_note(result)
    stale = _stale_reasons(entry, protocol, result, now)
    if stale:
        found.detail = "; ".join([*stale, *([found.detail] if found.detail else [])])
        found.state = RESULT_STALE
    return found


def _stale_reasons(entry: ModelEntry, protocol: str, result: EvalResult, now: _Now) -> list[str]:
    """What differs from a default `repro eval` now (repro.results.same_evaluation); what status
    cannot know (the dataset's folder path, an uncached checkpoint) is taken from the result."""
    from dataclasses import replace

    from repro.results.freshness import conditions_of, same_evaluation

    was = conditions_of(result)
    # A subset result is out of date once its folder changed; a whole-split result stays the
    # better number when files went missing since (the dataset's own line says so).
    grown = now.folder_images is not None and result.partial_reason == "subset"
    settings = entry.protocols[protocol].model_dump(mode="json") if protocol in entry.protocols else was.settings
    conditions = replace(
        was, settings=settings, variant=default_variant(entry), precision="fp32",
        checkpoint_sha256=now.cached_sha256 or was.checkpoint_sha256,
        folder_images=now.folder_images if grown else was.folder_images,
    )
    _, differences = same_evaluation(result, conditions, exact=True)
    return [d for d in differences if not d.startswith("its submission")]  # a server row says where it is


# ---------------------------------------------------------------------------------------- all


def model_statuses(
    ids: Sequence[str] | None = None,
    *,
    manifest: Manifest | None = None,
    results_dir: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    dataset_roots: Mapping[str, str | os.PathLike] | None = None,
    verify: bool = False,
) -> StatusReport:
    """The status of the named models (ids or aliases; all, in document order, when none);
    `data_root` and `dataset_roots` (--data-root, --dataset-root) say where the datasets are.

    An unknown id raises the manifest's UnknownModelError (one line, with suggestions). A
    `results_dir` given explicitly must exist; the default one ($REPRO_RESULTS, else
    <cache>/results) may not exist yet.
    """
    from repro.manifest import load_manifest
    from repro.paths import cache_home
    from repro.paths import results_dir as default_results_dir

    manifest = manifest or load_manifest()
    entries = _select(manifest, ids)
    folder = default_results_dir(results_dir)
    if results_dir is not None and not folder.is_dir():
        raise ReproError(f"results folder {folder} does not exist (run `repro eval` first, or pass --results DIR)")
    found, notes = read_results_tolerant(folder, verify_evidence=verify)
    by_key: dict[tuple[str, str], list[tuple[Path, EvalResult]]] = {}
    for path, result in found:
        by_key.setdefault((result.model_id, result.protocol), []).append((path, result))

    lock = read_lock_file()
    datasets: dict[tuple[str, str], DatasetStatus] = {}
    models = []
    for entry in entries:
        key = (entry.dataset, entry.eval_split)
        if key not in datasets:
            datasets[key] = dataset_status(entry.dataset, entry.eval_split, data_root, dataset_roots)
        checkpoint = checkpoint_status(entry, verify=verify, lock=lock)
        data = datasets[key]
        now = _Now(checkpoint.sha256 if checkpoint.state in USABLE else None,
                   data.count if data.unit == "images" and data.state != DATA_MISSING else None)
        protocols = ordered_protocols([*entry.documented, *(p for (m, p) in by_key if m == entry.id)])
        models.append(
            ModelStatus(
                entry.id, entry.dataset, entry.eval_split, default_variant(entry), checkpoint, data,
                [_protocol_status(entry, p, by_key.get((entry.id, p), []), now) for p in protocols],
            )
        )
    return StatusReport(models, str(folder), str(cache_home() / "checkpoints"), notes)


def _select(manifest: Manifest, ids: Sequence[str] | None) -> list[ModelEntry]:
    if not ids:
        return list(manifest.entries)
    wanted = {manifest.get(name).id for name in ids}  # UnknownModelError on a typo
    return [entry for entry in manifest.entries if entry.id in wanted]


# ---------------------------------------------------------------------------------- rendering


def status_json(report: StatusReport) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


def render_table(report: StatusReport, width: int | None = 80) -> str:
    """Plain aligned text: datasets, then one line per model, then the details worth reading.

    Nothing is cut: an id too long for the id column gets a line of its own, and the details
    wrap at `width` (None: no limit).
    """
    out = [f"results:     {report.results_dir}", f"checkpoints: {report.checkpoints_dir}", ""]
    out += _datasets_block(report.datasets, width)
    out += [""] + _models_block(report.models, width)
    details = _details(report)
    if details:
        out += ["", "details:"]
        for line in details:
            out += _wrap(line, width, indent="  ", hanging="    ")
    out += ["", *_wrap(_LEGEND, width)]
    return "\n".join(out) + "\n"


_LEGEND = (
    "cached: the file has the size it had when fetch checked its sha256 (--verify re-hashes); "
    "partial: a --limit or subset run; stale: measured under other conditions than a default run now "
    "(checkpoint, forward, precision, protocol settings, dataset size); —: not run."
)


def _wrap(text: str, width: int | None, indent: str = "", hanging: str = "") -> list[str]:
    if width is None:
        return [indent + text]
    return textwrap.wrap(
        text, width=max(width, 40), initial_indent=indent, subsequent_indent=hanging or indent,
        break_long_words=False, break_on_hyphens=False,
    ) or [indent]


def _datasets_block(datasets: list[DatasetStatus], width: int | None) -> list[str]:
    """One line per dataset; the folder last and whole (a path is not wrapped)."""
    rows = [("DATASET", "SPLIT", "STATE", "FOUND", "FOLDER")]
    for d in datasets:
        found = "" if d.count is None else f"{d.count}/{d.expected}" if d.count != d.expected else str(d.count)
        rows.append((d.title, d.split, d.state, found, d.root))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[4]]).rstrip() for row in rows]


def _models_block(models: list[ModelStatus], width: int | None) -> list[str]:
    protocols = ordered_protocols(s.protocol for m in models for s in m.protocols)
    cells = {m.model_id: {s.protocol: RESULT_MARKS.get(s.state, s.state) for s in m.protocols} for m in models}
    state_w = [max([len(p), *(len(cells[m.model_id].get(p, "")) for m in models)]) for p in protocols]
    ckpt_w = max([len("CHECKPOINT"), *(len(m.checkpoint.state) for m in models)])
    rest = 2 + ckpt_w + sum(2 + w for w in state_w)
    longest = max([len("MODEL"), *(len(m.model_id) for m in models)])
    id_w = longest if width is None else min(longest, max(len("MODEL"), width - rest))

    def line(first: str, ckpt: str, states: list[str]) -> list[str]:
        tail = "  ".join([ckpt.ljust(ckpt_w), *(s.ljust(w) for s, w in zip(states, state_w))]).rstrip()
        if len(first) > id_w:  # never cut an id: it gets its own line
            return [first, " " * id_w + "  " + tail]
        return [first.ljust(id_w) + "  " + tail]

    out = line("MODEL", "CHECKPOINT", protocols)
    for model in models:
        out += line(model.model_id, model.checkpoint.state, [cells[model.model_id].get(p, "") for p in protocols])
    return out


def _details(report: StatusReport) -> list[str]:
    """One line per thing that is not simply fine (a blank protocol cell is not documented)."""
    lines = [f"{d.title} {d.split}: {d.detail}" for d in report.datasets if d.state != DATA_COMPLETE]
    missing = [m.model_id for m in report.models if m.checkpoint.state == CKPT_MISSING]
    if missing:
        names = " ".join(missing) if len(missing) <= 3 else "ID... (or --all)"
        lines.append(f"{counted(len(missing), 'checkpoint')} not fetched: repro fetch --weights-only {names}")
    for model in report.models:
        if model.checkpoint.state not in (CKPT_CACHED, CKPT_MISSING):
            lines.append(f"{model.model_id}: checkpoint {model.checkpoint.state}: {model.checkpoint.detail}")
        for proto in model.protocols:
            if proto.state in (RESULT_PARTIAL, RESULT_STALE, RESULT_SERVER) and proto.detail:
                lines.append(f"{model.model_id} {proto.protocol}: {proto.state}: {proto.detail}")
            if proto.other_files:
                others = ", ".join(Path(f).name for f in proto.other_files)
                lines.append(f"{model.model_id} {proto.protocol}: current {Path(proto.result_file).name}; "
                             f"also {others}")
    return lines + list(report.notes)
