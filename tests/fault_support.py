"""Fault injection over the real engine (repro.engine.run_job) on a synthetic LIP folder.

A scenario (seeded, `Scenario.draw(seed)`) is:
1. maybe an earlier complete result in the results folder (an uninterrupted run under some options);
2. a run under options A, interrupted by a fault at a random point:
   - at an image: an exception, SIGINT, or a simulated SIGKILL (in-memory state dropped: nothing is
     saved after it; `--real-kill` in benchmarks/fault_matrix.py kills a real process instead);
   - inside one sink's `prepare` (an exception, a full disk, a kill);
   - during a progress-state save (an exception, a full disk, a kill);
   - during the result and sidecar write (an exception, a full disk, a kill, at each step);
   - with 2 ranks (threads whose exchanges really wait, tests/rank_support.py), in one rank only;
3. options changed to B (more or fewer saved predictions, --paint, another predictions folder,
   precision, --max-batch, --cpu-resize, the forward variant, --limit, an image added to or removed
   from the dataset, the checkpoint file replaced), or not;
4. the same run under B, without faults.

The invariant (`judge`): a result the last run leaves has the mIoU, the evidence sidecar bytes and
the prediction PNGs of one uninterrupted run under B (computed in a fresh folder); otherwise the
last run was refused with one line and every complete result on disk before it is unchanged. No
run may end in an exception other than the injected one, an interrupt or a one-line ReproError;
no result or sidecar file on disk may be damaged. Outcomes: "equal", "refused", "wrong: <why>".
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import signal
import types
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from synthetic_data import make_lip
from tiny_models import TinyConvNet

import repro.engine.progress as progress_module
import repro.engine.run as run_module
import repro.results.files as files_module
from repro.datasets import DATASETS, open_dataset
from repro.engine import EngineOptions, EvalJob, Terminated, run_job
from repro.engine.predictions import PredictionSink
from repro.engine.sinks import MetricSink
from repro.errors import ReproError
from repro.manifest import Protocol
from repro.results.evidence import load as load_evidence
from repro.results.files import read_result

IMAGES = 5
PROTOCOL = Protocol(  # slide + two scales + flip with LIP's pairs: batching matters (--max-batch)
    upstream_block="test", resize={"output_size": [40, 32], "keep_ratio": False},
    normalize={"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},
    mode="slide", crop_size=[24, 24], stride=[16, 16], scales=[0.75, 1.0], flip=True,
    flip_pairs=[[15, 14], [17, 16], [19, 18]], probs_before_resize=True,
)
FAULTS = ("none", "exception at an image", "SIGINT at an image", "kill at an image", "exception in a sink",
          "disk full in a sink", "kill in a sink", "exception saving progress", "disk full saving progress",
          "kill saving progress", "exception writing the result", "disk full writing the result",
          "kill writing the result", "one of 2 ranks interrupted")
CHANGES = ("none", "--save-predictions added", "--save-predictions dropped", "--paint added",
           "another predictions folder", "--precision", "--max-batch", "--cpu-resize", "--variant", "--limit",
           "an image added", "an image removed", "checkpoint replaced", "a saved PNG deleted")


class InjectedFault(RuntimeError):
    """The exception a scenario injects."""


class SimulatedKill(BaseException):
    """A SIGKILL: raised at the fault point; nothing the engine does afterwards is saved."""


@dataclass(frozen=True)
class Settings:
    """The options of one run that a change can touch (the rest are fixed)."""

    predictions: str | None = None  # folder name under the scenario's folder
    paint: bool = False
    precision: str = "fp32"
    max_batch: int = 4
    resize_on_cpu: bool = False
    variant: str = "upstream-head"
    limit: int | None = None
    images: int = IMAGES
    checkpoint: str = "a"
    force: bool = False
    deleted_png: bool = False  # a user deleted a saved PNG before this run


@dataclass
class Scenario:
    seed: int
    fault: str
    change: str
    point: int  # which image / sink call / save / write step the fault hits (0-based, modulo what exists)
    earlier: str  # "none" | "same as B" | "same as A"
    before: Settings = field(default_factory=Settings)
    after: Settings = field(default_factory=Settings)

    @classmethod
    def draw(cls, seed: int) -> Scenario:
        rng = random.Random(seed)
        fault = rng.choice(FAULTS)
        change = "none" if rng.random() < 0.3 else rng.choice(CHANGES)  # resuming unchanged: the common case
        base = Settings(predictions=rng.choice([None, "predictions"]), paint=False, max_batch=rng.choice([2, 4]),
                        limit=rng.choice([None, None, 4]))
        if base.predictions:
            base = replace(base, paint=rng.random() < 0.3)
        before, after = base, _changed(base, change, rng)
        if rng.random() < 0.5:  # the change, either way round
            before, after = after, before
        earlier = rng.choice(["none", "none", "same as B", "same as A"])
        return cls(seed, fault, change, rng.randrange(12), earlier, replace(before, force=rng.random() < 0.2), after)


def _changed(base: Settings, change: str, rng: random.Random) -> Settings:
    if change == "--save-predictions added":
        return replace(base, predictions=base.predictions or "predictions")  # with the reversal: dropped too
    if change == "--save-predictions dropped":
        return replace(base, predictions=None, paint=False)
    if change == "--paint added":
        return replace(base, predictions=base.predictions or "predictions", paint=True)
    if change == "another predictions folder":
        return replace(base, predictions="elsewhere")
    if change == "--precision":
        return replace(base, precision="bf16")
    if change == "--max-batch":
        return replace(base, max_batch=1 if base.max_batch != 1 else 4)
    if change == "--cpu-resize":
        return replace(base, resize_on_cpu=True)
    if change == "--variant":
        return replace(base, variant="training-era")
    if change == "--limit":
        return replace(base, limit=3 if base.limit is None else None)
    if change == "an image added":
        return replace(base, images=IMAGES + 1)
    if change == "an image removed":
        return replace(base, images=IMAGES - 1)
    if change == "checkpoint replaced":
        return replace(base, checkpoint="b")
    if change == "a saved PNG deleted":  # between the runs (run_scenario): a user tidying up
        return replace(base, predictions=base.predictions or "predictions", deleted_png=True)
    return base


# ----------------------------------------------------------------------------------- the runs


def make_data(root: Path, images: int) -> Path:
    """The LIP folder with `images` images (the first ones always the same)."""
    folder = root / "LIP"
    if folder.exists():
        shutil.rmtree(folder)
    return make_lip(folder, n_val=images)


def make_job(root: Path, settings: Settings) -> EvalJob:
    seed = {"a": 0, "b": 1}[settings.checkpoint] + (10 if settings.variant == "training-era" else 0)
    folder = root / "LIP"
    return EvalJob(
        model_id="tiny_lip", protocol_name="ms+flip", protocol=PROTOCOL, dataset=open_dataset("lip", folder, "val"),
        dataset_name="lip", split="val", data_root=str(folder), class_names=DATASETS["lip"].class_names,
        build_model=lambda: TinyConvNet(20, seed=seed), checkpoint=str(root / f"{settings.checkpoint}.pth"),
        checkpoint_sha256=settings.checkpoint * 64, variant=settings.variant,
    )


def make_options(root: Path, settings: Settings) -> EngineOptions:
    return EngineOptions(
        device="cpu", results=root / "results", workers=0, save_every=1, precision=settings.precision,
        max_batch=settings.max_batch, resize_on_cpu=settings.resize_on_cpu, limit=settings.limit,
        save_predictions=root / settings.predictions if settings.predictions else None, paint=settings.paint,
        force=settings.force, allow_subset=True,
    )


def clean_run(root: Path, settings: Settings) -> Any:
    make_data(root, settings.images)
    return run_job(make_job(root, settings), make_options(root, settings))


# ----------------------------------------------------------------------------------- the faults


class Injector:
    """Counts the calls at the fault's place and strikes at call `point` (modulo the calls made)."""

    def __init__(self, scenario: Scenario, real_kill: bool = False):
        self.scenario, self.calls, self.struck, self.killed = scenario, 0, False, False
        self.real_kill = real_kill

    def due(self) -> bool:
        hit = not self.struck and self.calls == self.scenario.point % 6
        self.calls += 1
        if hit:
            self.struck = True
        return hit

    def strike(self, kind: str) -> None:
        if kind == "exception":
            raise InjectedFault("injected fault")
        if kind == "disk full":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if kind == "SIGINT":
            os.kill(os.getpid(), signal.SIGINT)
            return
        if self.real_kill:
            os.kill(os.getpid(), signal.SIGKILL)
        self.killed = True
        raise SimulatedKill()


def install(monkeypatch, scenario: Scenario, real_kill: bool = False) -> Injector:
    """Patch the fault's place; after a simulated kill, nothing is saved any more (`real_kill`:
    the process kills itself with SIGKILL instead)."""
    injector = Injector(scenario, real_kill)
    fault = scenario.fault
    kind = ("kill" if fault.startswith("kill") else "disk full" if fault.startswith("disk full")
            else "SIGINT" if fault.startswith("SIGINT") else "exception")
    real_save = progress_module.State.save

    def save(self, path):
        if injector.killed:
            return  # a killed process saves nothing
        if "saving progress" in fault and injector.due():
            injector.strike(kind)
        real_save(self, path)

    monkeypatch.setattr(progress_module.State, "save", save)
    if "at an image" in fault:
        real_sample = run_module.evaluate_share.__globals__["_sample"]

        def sample(job, item, device):
            if injector.due():
                injector.strike(kind)
            return real_sample(job, item, device)

        monkeypatch.setitem(run_module.evaluate_share.__globals__, "_sample", sample)
    if "in a sink" in fault:  # the last sink most often: the others have taken the image then
        sinks = [MetricSink, PredictionSink] if scenario.before.predictions else [MetricSink]
        _wrap_prepare(monkeypatch, sinks[-1] if scenario.point % 3 else sinks[0], injector, kind)
    if "writing the result" in fault:
        _wrap_publish(monkeypatch, injector, kind)
    return injector


def _wrap_prepare(monkeypatch, sink_class, injector: Injector, kind: str) -> None:
    real = sink_class.prepare

    def prepare(self, sample, prediction):
        if injector.due():
            injector.strike(kind)
        return real(self, sample, prediction)

    monkeypatch.setattr(sink_class, "prepare", prepare)


def _wrap_publish(monkeypatch, injector: Injector, kind: str) -> None:
    """Strike at one of the write steps: the temporary sidecar, the temporary result, the
    retiring of the old result, each rename into place."""
    real_write, real_retire = files_module.write_beside, files_module.retire_result

    def step(real):
        def wrapped(*args, **kwargs):
            if injector.due():
                injector.strike(kind)
            return real(*args, **kwargs)
        return wrapped

    shim = types.SimpleNamespace(**{name: getattr(os, name) for name in dir(os) if not name.startswith("__")})
    shim.replace = step(os.replace)
    monkeypatch.setattr(files_module, "write_beside", step(real_write))
    monkeypatch.setattr(files_module, "retire_result", step(real_retire))
    monkeypatch.setattr(files_module, "os", shim)


# ----------------------------------------------------------------------------------- a scenario


ALLOWED_IN_THE_FAULTY_RUN = (InjectedFault, SimulatedKill, KeyboardInterrupt, Terminated, ReproError)


@dataclass
class Outcome:
    verdict: str  # "equal" | "refused" | "wrong: ..."
    scenario: Scenario


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every complete result file (and archived one) of the results folder."""
    found = {}
    for path in sorted(folder.glob("*__*.json*")):
        try:
            if json.loads(path.read_text()).get("status") == "complete":
                found[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        except (OSError, ValueError):
            pass
    return found


def run_scenario(scenario: Scenario, root: Path, monkeypatch, reference_root: Path,
                 real_kill: bool = False) -> Outcome:
    """The whole scenario in `root` (made anew); `reference_root` caches the clean runs.
    `real_kill`: a kill fault kills a real process (the faulty run runs in a child process)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    if scenario.earlier != "none":
        clean_run(root, scenario.after if scenario.earlier == "same as B" else replace(scenario.before, force=False))
    earlier = snapshot(root / "results")
    make_data(root, scenario.before.images)
    with monkeypatch.context() as patch:
        ranks = (_ThreadRanks(patch, scenario) if scenario.fault == "one of 2 ranks interrupted"
                 else _OneProcess(real_kill and scenario.fault.startswith("kill")))
        problem = ranks.faulty_run(scenario, root, patch)
        if problem:
            return Outcome(f"wrong: {problem}", scenario)
        lost = [name for name, digest in earlier.items() if not _still_there(root / "results", name, digest)]
        if lost:
            return Outcome(f"wrong: the faulty run lost the complete result {lost[0]}", scenario)
        make_data(root, scenario.after.images)
        if scenario.after.deleted_png:
            for png in sorted((root / "predictions").rglob("*.png"))[:1]:
                png.unlink()
        before_last = snapshot(root / "results")
        outcome = ranks.last_run(scenario, root)
    if isinstance(outcome, ReproError):
        return Outcome(_judge_refusal(outcome, root, before_last), scenario)
    if isinstance(outcome, BaseException):
        return Outcome(f"wrong: the last run raised {type(outcome).__name__}: {outcome}", scenario)
    return Outcome(judge(outcome, root, scenario.after, reference_root), scenario)


def _one_line(err: BaseException) -> str | None:
    if isinstance(err, ReproError) and "\n" in str(err):
        return f"a multi-line error: {err!r}"
    return None


class _OneProcess:
    def __init__(self, in_a_child: bool = False):
        self.in_a_child = in_a_child

    def faulty_run(self, scenario: Scenario, root: Path, patch) -> str | None:
        """Run A with its fault; None, or what went wrong beyond the fault itself."""
        if self.in_a_child:
            return _killed_child(scenario, root)
        with patch.context() as faults:
            install(faults, scenario)
            try:
                run_job(make_job(root, scenario.before), make_options(root, scenario.before))
            except ALLOWED_IN_THE_FAULTY_RUN as err:
                return _one_line(err)
            except BaseException as err:  # noqa: BLE001
                return f"the faulty run raised {type(err).__name__}: {err}"
        return None

    def last_run(self, scenario: Scenario, root: Path) -> Any:
        try:
            return run_job(make_job(root, scenario.after), make_options(root, scenario.after))
        except BaseException as err:  # noqa: BLE001 - judged, not raised
            return err


CHILD = """
import json, sys
import pytest, torch
torch.set_num_threads(1)
import fault_support as fs
scenario = fs.Scenario(**json.loads(sys.argv[1]))
scenario.before, scenario.after = fs.Settings(**scenario.before), fs.Settings(**scenario.after)
with pytest.MonkeyPatch.context() as patch:
    fs.install(patch, scenario, real_kill=True)
    root = fs.Path(sys.argv[2])
    try:
        fs.run_job(fs.make_job(root, scenario.before), fs.make_options(root, scenario.before))
    except fs.ReproError as err:
        print(err, file=sys.stderr)
        sys.exit(3)
"""


def _killed_child(scenario: Scenario, root: Path) -> str | None:
    """Run A in a child process that SIGKILLs itself at the fault point."""
    import subprocess
    import sys
    from dataclasses import asdict

    here = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(asdict(scenario)), str(root)], env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode not in (0, 3, -signal.SIGKILL) or (done.returncode == 3 and "\n" in done.stderr.strip()):
        return f"the child run ended with {done.returncode}: {done.stderr.strip()[-300:]}"
    return None


class _ThreadRanks:
    """Two ranks (threads whose exchanges really wait); in the faulty run one of them fails at
    an image, the other loses it at its next exchange."""

    def __init__(self, patch, scenario: Scenario):
        from rank_support import ThreadWorld

        self.world = ThreadWorld(patch, 2)
        self.interrupted = scenario.point % 2

    def faulty_run(self, scenario: Scenario, root: Path, patch) -> str | None:
        from test_evaluate import CountingDataset

        share = list(range(self.interrupted, IMAGES - 1, 2))
        crash_at = share[scenario.point % len(share)]

        def work(rank: int):
            job = make_job(root, scenario.before)
            if rank == self.interrupted:
                job.dataset = CountingDataset(job.dataset, crash_at=crash_at)
            return run_job(job, make_options(root, scenario.before))

        for rank, outcome in self.world.run(work).items():
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, (*ALLOWED_IN_THE_FAULTY_RUN, RuntimeError)):
                    return f"rank {rank} raised {type(outcome).__name__}: {outcome}"
                if _one_line(outcome):
                    return _one_line(outcome)
        return None

    def last_run(self, scenario: Scenario, root: Path) -> Any:
        outcomes = self.world.run(lambda rank: run_job(make_job(root, scenario.after),
                                                       make_options(root, scenario.after)))
        odd = [o for o in outcomes.values() if isinstance(o, BaseException) and not isinstance(o, ReproError)]
        return odd[0] if odd else outcomes[0]


def _still_there(folder: Path, name: str, digest: str) -> bool:
    """A complete result is unchanged at its name, or kept under an archive name (a replacement)."""
    for path in folder.glob(f"{name}*"):
        if hashlib.sha256(path.read_bytes()).hexdigest() == digest:
            return True
    return False


def _judge_refusal(err: ReproError, root: Path, before: dict[str, str]) -> str:
    if "\n" in str(err):
        return f"wrong: a multi-line error: {err!r}"
    now = snapshot(root / "results")
    changed = [name for name, digest in before.items() if now.get(name) != digest]
    if changed:
        return f"wrong: refused, but the complete result {changed[0]} changed"
    return "refused"


def judge(result: Any, root: Path, settings: Settings, reference_root: Path) -> str:
    """Compare what the last run left with one uninterrupted run under the same settings."""
    reference = _reference(reference_root, settings)
    path = root / "results" / reference["name"]
    damaged = _damaged_files(root / "results")
    if damaged:
        return f"wrong: damaged file {damaged}"
    if not path.is_file():
        return f"wrong: no result at {path.name}"
    written = read_result(path)
    if (written.miou, written.num_images, written.per_class_iou) != (reference["miou"], reference["images"],
                                                                      reference["per_class"]):
        return f"wrong: mIoU {written.miou} over {written.num_images} images, uninterrupted {reference['miou']}"
    sidecar = path.with_name(written.evidence or "?")
    if not sidecar.is_file() or hashlib.sha256(sidecar.read_bytes()).hexdigest() != reference["evidence"]:
        return "wrong: the evidence sidecar differs from the uninterrupted run's"
    if written.evidence_sha256 != reference["evidence"]:
        return "wrong: the result names another sidecar digest"
    if written.predictions_dir and _claims(written, settings):  # the PNGs of the folder the result names
        pngs = _pngs(Path(written.predictions_dir))
        expected = {name: digest for name, digest in reference["pngs"].items()
                    if not name.startswith("paint/") or any(n.startswith("paint/") for n in pngs)}
        if pngs != expected:
            return "wrong: the prediction PNGs differ from the uninterrupted run's"
    return "equal"


def _claims(result: Any, settings: Settings) -> bool:
    """Whether repro still stands for the PNGs of the folder a result names: the last run asked
    for predictions (then they must be the result's), or the folder's owner record is the result's
    (a forced run of other conditions takes a folder over; a user may delete files)."""
    from repro.engine.predictions import folder_owner, result_identity

    if settings.predictions:
        return True
    return folder_owner(result.predictions_dir) == result_identity(result) and not settings.deleted_png


def _reference(reference_root: Path, settings: Settings) -> dict[str, Any]:
    """One uninterrupted run under `settings` in a fresh folder (cached per settings), its
    predictions saved and painted (where they go changes no number)."""
    settings = replace(settings, force=False, predictions="predictions", paint=True, deleted_png=False)
    key = hashlib.sha256(repr(settings).encode()).hexdigest()[:16]
    cached = reference_root / f"{key}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    folder = reference_root / key
    if folder.exists():
        shutil.rmtree(folder)
    result = clean_run(folder, settings)
    path = next((folder / "results").glob("*__*.json"))
    summary = {"name": path.name, "miou": result.miou, "images": result.num_images,
               "per_class": result.per_class_iou,
               "evidence": hashlib.sha256((path.with_name(result.evidence)).read_bytes()).hexdigest(),
               "pngs": _pngs(folder / settings.predictions)}
    cached.write_text(json.dumps(summary))
    return summary


def _pngs(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.png"))}


def _damaged_files(folder: Path) -> str | None:
    """A result or sidecar at a real (not hidden, not archived) name that does not load."""
    for path in sorted(folder.glob("*__*.json")):
        try:
            result = read_result(path)
        except ReproError as err:
            return f"{path.name}: {err}"
        if result.evidence:
            try:
                load_evidence(path.with_name(result.evidence), result.evidence_sha256)
            except ReproError as err:
                return f"{path.name}: {err}"
    return None
