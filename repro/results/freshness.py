"""One freshness rule: is a result on disk the evaluation that would run now? The engine, the
plan, the launcher and `repro status` all ask `same_evaluation`; `replacement_refused` is the one
rule that protects a complete result of other conditions."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from repro.results.files import EvalResult
from repro.text import counted, short_digest


@dataclass(frozen=True)
class RunConditions:
    """What determines a result's numbers. None in an optional field: not known, not compared
    (e.g. `repro status` with the dataset gone); the engine knows them all."""

    model_id: str
    protocol: str
    settings: dict  # the manifest Protocol, dumped as JSON
    variant: str
    precision: str = "fp32"
    dataset: str | None = None
    split: str | None = None
    data_root: str | None = None  # the dataset folder
    limit: int | None = None
    folder_images: int | None = None  # images in the folder now
    checkpoint: str | None = None  # the file that would be loaded
    checkpoint_sha256: str | None = None  # its digest (compared at the cheap level too when known)
    dataset_fingerprint: str | None = None


def conditions_of(result: EvalResult) -> RunConditions:
    """The conditions a result was measured under."""
    return RunConditions(
        model_id=result.model_id, protocol=result.protocol, settings=result.settings, variant=result.variant,
        precision=result.precision, dataset=result.dataset, split=result.split, data_root=result.data_root,
        limit=result.limit, folder_images=result.num_images_total, checkpoint=result.checkpoint,
        checkpoint_sha256=result.checkpoint_sha256, dataset_fingerprint=result.dataset_fingerprint,
    )


def same_evaluation(result: EvalResult, conditions: RunConditions, *, exact: bool) -> tuple[bool, list[str]]:
    """(whether `result` is what running under `conditions` would produce, what differs in words).

    exact=False, the cheap level (plan, launcher, status): no file is hashed; the checkpoint is
    compared by sha256 where `conditions` knows it, else by path and "not modified since the result".
    exact=True, the engine's level: the checkpoint sha256 must be equal, as must every known field.
    """
    was = conditions_of(result)
    differences = [*_run_differences(was, conditions), *_data_differences(was, conditions, result)]
    differences += _checkpoint_differences(result, conditions, exact)
    if result.status == "server" and not (result.submission and Path(result.submission).is_file()):
        differences.append(f"its submission {result.submission or '(none recorded)'} is missing")
    return not differences, differences


def _run_differences(was: RunConditions, now: RunConditions) -> list[str]:
    differences = []
    if (was.model_id, was.protocol) != (now.model_id, now.protocol):
        differences.append(f"it is {was.model_id} [{was.protocol}], not {now.model_id} [{now.protocol}]")
    if was.settings != now.settings:
        keys = sorted(k for k in {*was.settings, *now.settings} if was.settings.get(k) != now.settings.get(k))
        differences.append(f"protocol settings differ ({', '.join(keys)})")
    if was.variant != now.variant:
        differences.append(f"{was.variant} forward, not {now.variant}")
    if was.precision != now.precision:
        differences.append(f"precision {was.precision}, not {now.precision}")
    return differences


def _covers_all(limit: int | None, images: int | None) -> bool:
    return limit is None or (images is not None and limit >= images)


def _data_differences(was: RunConditions, now: RunConditions, result: EvalResult) -> list[str]:
    differences = []
    if now.dataset is not None and (was.dataset, was.split) != (now.dataset, now.split):
        differences.append(f"dataset {was.dataset} {was.split}, not {now.dataset} {now.split}")
    if now.data_root is not None and not _same_path(was.data_root, now.data_root):
        differences.append(f"data folder {was.data_root}, not {now.data_root}")
    images = now.folder_images if now.folder_images is not None else was.folder_images
    if was.limit != now.limit and not (_covers_all(was.limit, images) and _covers_all(now.limit, images)):
        differences.append(f"--limit {was.limit or 'none'}, not {now.limit or 'none'}")
    if now.folder_images is not None and was.folder_images != now.folder_images:
        differences.append(f"{counted(was.folder_images, 'image')} in the folder then, {now.folder_images} now")
    if now.dataset_fingerprint and was.dataset_fingerprint and was.dataset_fingerprint != now.dataset_fingerprint:
        differences.append("the dataset files differ (fingerprint)")
    return differences


def _checkpoint_differences(result: EvalResult, now: RunConditions, exact: bool) -> list[str]:
    had = result.checkpoint_sha256
    if exact or (now.checkpoint_sha256 and had):
        if had == now.checkpoint_sha256:
            return []
        return [f"checkpoint sha256 {short_digest(had)}, not {short_digest(now.checkpoint_sha256)}"]
    if not result.checkpoint:
        return [] if now.checkpoint is None else ["measured without a checkpoint file"]
    if now.checkpoint is not None and not _same_path(result.checkpoint, now.checkpoint):
        return [f"checkpoint {result.checkpoint}, not {now.checkpoint}"]
    try:
        modified = Path(result.checkpoint).stat().st_mtime
    except OSError:
        return [f"its checkpoint {result.checkpoint} is gone"]
    if modified > result.finished.timestamp():
        return [f"its checkpoint {result.checkpoint} changed after the result was made"]
    return []


def _same_path(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def replacement_refused(path: str | os.PathLike, result: EvalResult, differences: list[str], force: bool) -> str | None:
    """Why a run may not write over the result at `path` (a complete result of other conditions,
    without --force), in one line; None when it may. The plan and the engine both ask this."""
    if force or not differences or result.status != "complete":
        return None
    return (f"{path} holds a complete result of other conditions ({'; '.join(differences[:2])}); "
            "--force replaces it (the old file is kept, renamed)")


@dataclass(frozen=True)
class OnDisk:
    """The result file a run would write, as it is now: `result` None when there is none, or it
    cannot be read, or its evidence sidecar is not its own (then `differences` says so): such a
    file is neither finished nor protected, and a run replaces it (archived if complete)."""

    path: Path
    result: EvalResult | None
    differences: list[str]  # what differs from the run's conditions (empty: the same evaluation)

    @property
    def finished(self) -> bool:
        """The same evaluation is on disk, complete with its evidence: a run need not redo it."""
        return self.result is not None and not self.differences

    def refusal(self, force: bool) -> str | None:
        """Why the run may not write over what is there (replacement_refused), or None."""
        return None if self.result is None else replacement_refused(self.path, self.result, self.differences, force)


def result_on_disk(path: str | os.PathLike, conditions: RunConditions, *, exact: bool) -> OnDisk:
    """Is the result at `path` the evaluation `conditions` describe? The one "finished" rule of the
    engine (exact: the checkpoint's sha256, the sidecar's too) and of the plan, the launcher and
    the CLI (cheap: no hashing)."""
    from repro.errors import ReproError
    from repro.results.files import read_result, sidecar_problem

    path = Path(path)
    if not path.is_file():
        return OnDisk(path, None, [])
    try:
        result = read_result(path)
    except ReproError:
        return OnDisk(path, None, [])  # damaged: the run replaces it
    broken = sidecar_problem(path, result, verify=exact)
    if broken:  # never compared, not protected: the run redoes it (the old file is archived)
        return OnDisk(path, None, [broken])
    return OnDisk(path, result, same_evaluation(result, conditions, exact=exact)[1])
