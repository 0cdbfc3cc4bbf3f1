"""`EngineOptions`: the one typed object that carries how to evaluate from the CLI to the engine,
the plan and the launcher (each default is written here once). It checks itself when it is made
(a precision name, --paint without --save-predictions, a non-positive limit or save interval: one
line, exit 2). Light at import: no torch."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from repro.errors import ReproError
from repro.numerics import Precision
from repro.paths import results_dir


@dataclass(frozen=True)
class EngineOptions:
    """How to run one or many evaluations. `checkpoint`, `data_root`, `dataset_roots` and `variant`
    pick the job (`build_job`); the rest drive the engine. Picklable (the launcher sends it to its
    jobs, so a job finds the datasets where the submitting command did).

    `precision` becomes a `Precision` whatever was passed; `results` is --results as given and
    `results_folder` the folder it names (None: $REPRO_RESULTS, else <cache>/results, looked up
    when used, so that a default object made at import time follows the environment of the run).
    """

    checkpoint: str | os.PathLike | None = None  # None: the verified cached download
    data_root: str | os.PathLike | None = None  # None: $REPRO_DATA, else <cache>/data
    # --dataset-root NAME=PATH: one dataset's own folder (repro.datasets.roots.resolve_dataset_root)
    dataset_roots: Mapping[str, str | os.PathLike] = field(default_factory=dict, hash=False)
    variant: str | None = None  # None: each row's default forward
    device: str = "auto"
    precision: Precision = Precision.FP32
    limit: int | None = None
    results: str | os.PathLike | None = None  # --results; the folder: results_folder
    resume: bool = True
    force: bool = False  # replace a finished result of other conditions (the old file is kept, renamed)
    wait_lock: bool = False  # another process runs the same evaluation: wait for it instead of failing
    max_batch: int = 4  # crops (or whole images) per forward; halved on CUDA out-of-memory
    workers: int | None = None  # loader threads; None = 1 on 1-2 cores, else min(4, CPUs - 1)
    save_every: int = 200  # images between progress saves
    save_every_seconds: float = 300.0  # ... and at least this often
    resize_on_cpu: bool = False  # final per-output resize on the CPU, as upstream
    allow_subset: bool = False  # evaluate a folder smaller than the official split (partial result)
    save_predictions: str | os.PathLike | None = None  # folder for one label PNG per image
    paint: bool = False  # with save_predictions: also a PNG in the dataset's colours

    def __post_init__(self) -> None:
        set_field = object.__setattr__  # frozen: the checked, typed values replace what was passed
        set_field(self, "precision", Precision.parse(self.precision))
        if self.limit is not None and self.limit <= 0:
            raise ReproError("--limit must be a positive number of images", exit_code=2)
        if self.save_every <= 0 or self.save_every_seconds <= 0:
            raise ReproError("the progress-save interval must be positive", exit_code=2)
        if self.paint and self.save_predictions is None:
            raise ReproError("--paint needs --save-predictions DIR", exit_code=2)

    @property
    def results_folder(self) -> Path:
        """The folder of the result files, absolute (repro.paths.results_dir: the one rule)."""
        return results_dir(self.results)

    def for_run(self, model_id: str, protocol: str, runs: int) -> EngineOptions:
        """The options of one run of a command of `runs`: --save-predictions DIR gets a subfolder
        per run when there are several (their PNGs would share names)."""
        if self.save_predictions is None or runs == 1:
            return self
        return replace(self, save_predictions=Path(self.save_predictions) / f"{model_id}__{protocol}")

    def absolute(self) -> EngineOptions:
        """Paths as another process must see them (it may start in another folder, or on another
        node with another environment: the results folder is named, not left to its default)."""
        fixed = {key: _absolute(value) for key in ("checkpoint", "data_root", "save_predictions")
                 if (value := getattr(self, key)) is not None}
        roots = {name: _absolute(path) for name, path in self.dataset_roots.items()}
        return replace(self, results=str(self.results_folder), **fixed, dataset_roots=roots)


def _absolute(path: str | os.PathLike) -> str:
    return str(Path(path).expanduser().resolve())


DEVICE_HELP = "use auto, cpu, cuda or cuda:N"


def parse_device(device: str | None) -> tuple[str, int | None]:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> ('auto'|'cpu'|'cuda', N or None), without torch's
    help: the plan and the engine read a --device value the same way."""
    name = (device or "auto").strip().lower()
    if name in ("auto", "cpu", "cuda"):
        return name, None
    kind, sep, index = name.partition(":")
    if kind == "cuda" and sep and index.isdigit():
        return "cuda", int(index)
    raise ReproError(f"bad device '{device}'; {DEVICE_HELP}")
