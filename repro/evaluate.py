"""The evaluation engine: one model x one dataset split x one test protocol -> one result file.

The state of a run is the dataset-wide confusion matrix (no prediction or full-resolution score
map is kept beyond the image being evaluated). It is saved atomically every `save_every` images
or `save_every_seconds`, and on SIGINT / SIGTERM / an error, under `<output>/.progress/`, tagged
with everything that determines the numbers (model, protocol settings, checkpoint digest, dataset
root and split, precision, limit, rank layout), so an interrupted run resumes where it stopped
and a stale state is never mixed into a new run. A signal never splits an image: the matrix
update and the image counter change together (`_Interrupts.atomic`).

Every result records images/s, seconds per image, the peak memory, the FLOPs of one image's
forward passes (watched on the first image by `repro.inference.FlopObserver`, or counted with
torch's FlopCounterMode on a "meta"-device twin of the network: the predictions are untouched)
and the achieved share of the GPU's fp32 peak (repro.perf).

Under torchrun (or any initialised default process group) each rank evaluates a strided share of
the images (every image exactly once, no sampler padding), the int64 confusion matrices are
summed with all_reduce, and rank 0 writes the result.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

import repro
from repro.errors import DatasetError, ReproError
from repro.fetch.checkpoints import resolve_checkpoint
from repro.fetch.download import file_digest
from repro.fileio import atomic_path
from repro.inference import PRECISIONS, FlopObserver, Predictor, count_flops
from repro.metrics import ConfusionMatrix
from repro.perf import device_peak_flops, peak_fraction, process_peak_rss_bytes
from repro.results import EvalResult, latest_selftest, read_result, result_filename, write_result

PROGRESS_DIR = ".progress"
SUBMISSION_DIR = "submissions"
STATE_VERSION = 1

ProgressCallback = Callable[[int, int], None]  # (images done on this rank, images of this rank)
LogCallback = Callable[[str], None]
PhaseCallback = Callable[[str], None]  # "building model", "loading checkpoint", "evaluating"


class Terminated(BaseException):
    """SIGTERM arrived (e.g. a cluster preempting the job); progress was saved. Like
    KeyboardInterrupt it is not an Exception, so no `except Exception` swallows it."""


# ---------------------------------------------------------------------------------------------
# What to evaluate


@dataclass
class EvalJob:
    """Everything one evaluation needs, resolved (the Python API builds it from the manifest).

    `protocol` is a manifest `Protocol` (or an object/dict with the same fields: resize, normalize,
    mode, crop_size, stride, scales, flip, flip_pairs, probs_before_resize). `dataset` behaves like
    `repro.datasets.EvalDataset` (len, ids, [i] -> Sample). `build_model` returns the segmentor
    with its weights loaded, in eval mode, on the CPU.
    """

    model_id: str
    protocol_name: str
    protocol: Any
    dataset: Any
    dataset_name: str
    split: str
    data_root: str
    class_names: Sequence[str]
    build_model: Callable[[], torch.nn.Module]
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    server: bool = False  # no labels: write a test-server submission instead of a metric
    # Loads the checkpoint into the built model (a separate step so progress can name it).
    load_weights: Callable[[torch.nn.Module], Any] | None = None
    # The official size of the split, in `count_unit` (images, or videos for VSPW); None = unknown,
    # no subset check. A folder with fewer is refused unless EngineOptions.allow_subset.
    official_count: int | None = None
    count_unit: str = "images"
    variant: str = "upstream-head"
    default_variant: str = "upstream-head"  # the row's default: its results keep the plain file name

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def result_filename(self) -> str:
        return result_filename(self.model_id, self.protocol_name, self.variant, self.default_variant)

    def settings(self) -> dict:
        if hasattr(self.protocol, "model_dump"):
            return self.protocol.model_dump(mode="json")
        return json.loads(json.dumps(dict(self.protocol)))


@dataclass(frozen=True)
class EngineOptions:
    device: str = "auto"
    precision: str = "fp32"
    limit: int | None = None
    output: str | os.PathLike | None = None  # None: repro.paths.results_dir()
    resume: bool = True
    max_batch: int = 4  # crops (or whole images) per forward; halved on CUDA out-of-memory
    workers: int | None = None  # loader threads; None = 1 on 1-2 cores, else min(4, CPUs - 1)
    save_every: int = 200  # images between progress saves
    save_every_seconds: float = 300.0  # ... and at least this often
    resize_on_cpu: bool = False  # final per-output resize on the CPU, as upstream
    allow_subset: bool = False  # evaluate a folder smaller than the official split (partial result)


# ---------------------------------------------------------------------------------------------
# Small helpers


def _git_commit() -> str | None:
    """HEAD of the repository the package runs from, if it runs from a git checkout."""
    package_dir = Path(repro.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> a torch device (under torchrun 'cuda' = cuda:LOCAL_RANK)."""
    name = (device or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ReproError(f"device '{device}' was requested but CUDA is not available here; use --device cpu")
        index = local_rank if name == "cuda" else None
        if index is None:
            try:
                index = int(name.split(":", 1)[1])
            except (IndexError, ValueError):
                raise ReproError(f"bad device '{device}'; use auto, cpu, cuda or cuda:N") from None
        if not 0 <= index < torch.cuda.device_count():
            raise ReproError(f"device '{device}' does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
        return torch.device("cuda", index)
    raise ReproError(f"bad device '{device}'; use auto, cpu, cuda or cuda:N")


def _device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"


@contextlib.contextmanager
def _upstream_numerics(device: torch.device):
    """TF32 off for matmul and cuDNN (as upstream's test script), restored afterwards."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@dataclass(frozen=True)
class _Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def setup_distributed(device: str = "auto") -> _Ranks:
    """Join the default process group if one exists or torchrun asked for one (WORLD_SIZE > 1).

    The group is created once and kept for the whole process (the CLI evaluates several models).
    """
    if dist.is_available() and dist.is_initialized():
        return _Ranks(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return _Ranks()
    if not dist.is_available():
        raise ReproError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    local_rank = _env_int("LOCAL_RANK", 0)
    use_cuda = resolve_device(device, local_rank).type == "cuda"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return _Ranks(dist.get_rank(), dist.get_world_size(), local_rank)


def _reduce_device(device: torch.device) -> torch.device:
    """Where collective tensors must live for the active backend (nccl: GPU, gloo: CPU)."""
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def _default_workers() -> int:
    """Loader threads: one on a machine of one or two cores (more only compete with the compute
    threads), else up to 4."""
    cpus = os.cpu_count() or 1
    return 1 if cpus <= 2 else min(4, cpus - 1)


# ---------------------------------------------------------------------------------------------
# Data loading: read + test transform in worker processes, errors carried back as values


class _Failure:
    def __init__(self, error: ReproError):
        self.error = error


class _TransformedSamples(torch.utils.data.Dataset):
    """Reads sample `indices[k]` and applies the protocol's test transform."""

    def __init__(self, dataset: Any, indices: Sequence[int], protocol: Any):
        self.dataset = dataset
        self.indices = list(indices)
        self.protocol = protocol

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        from repro.datasets import test_transform

        try:
            sample = self.dataset[self.indices[k]]
            image = test_transform(sample.image, self.protocol)
        except ReproError as err:  # travels back intact instead of as a wrapped traceback
            return _Failure(err)
        label = None if sample.label is None else torch.from_numpy(np.asarray(sample.label, dtype=np.int64))
        return sample.id, image, label, tuple(sample.image.shape[:2])


PREFETCH_DEPTH = 2  # samples read ahead (at least) by the loader threads


def _read_ahead(samples: _TransformedSamples, threads: int, depth: int):
    """Yields samples[0], samples[1], ... in order, read up to `depth` ahead by `threads` threads
    of this process (OpenCV and numpy release the GIL while decoding and resizing); an exception
    is raised at its sample's place. Threads, not worker processes: a fork of a process that has
    started CUDA may hang (on an H200 a second evaluation in one process stalled for good on its
    forked loader), and fresh interpreters (spawn) would re-run an unguarded user script."""
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="repro-loader")
    pending: collections.deque = collections.deque()
    try:
        for k in range(len(samples)):
            pending.append(pool.submit(samples.__getitem__, k))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # the consumer stopped (or failed): drop what was not started, never wait for it
        pool.shutdown(wait=False, cancel_futures=True)


def _loader(samples: _TransformedSamples, workers: int):
    """`workers` loader threads reading ahead; 0: each sample read in the calling thread."""
    if workers <= 0:
        return (samples[k] for k in range(len(samples)))
    return _read_ahead(samples, workers, depth=max(PREFETCH_DEPTH, 2 * workers))


# ---------------------------------------------------------------------------------------------
# Progress state


def progress_path(output: Path, model_id: str, protocol_name: str, ranks: _Ranks,
                  variant: str | None = None, default_variant: str | None = None) -> Path:
    stem = result_filename(model_id, protocol_name, variant, default_variant)[: -len(".json")]
    suffix = f".rank{ranks.rank}-of-{ranks.world_size}" if ranks.distributed else ""
    return output / PROGRESS_DIR / f"{stem}{suffix}.pt"


def _fingerprint(job: EvalJob, options: EngineOptions, ranks: _Ranks, ids: Sequence[str]) -> str:
    """A digest of everything that determines this rank's numbers."""
    content = {
        "state_version": STATE_VERSION,
        "model_id": job.model_id,
        "protocol": job.protocol_name,
        "settings": job.settings(),
        "checkpoint_sha256": job.checkpoint_sha256,
        "variant": job.variant,  # the two forwards of a checkpoint never share progress
        "dataset": job.dataset_name,
        "split": job.split,
        "data_root": job.data_root,
        "num_classes": job.num_classes,
        "precision": options.precision,
        "limit": options.limit,
        "rank": ranks.rank,
        "world_size": ranks.world_size,
        "ids": hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest(),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()


@dataclass
class _State:
    fingerprint: str
    matrix: np.ndarray
    done: int  # images of this rank's share already counted (a prefix of the share)
    seconds: float  # compute time spent so far, over all sessions
    started: str  # ISO time of the first session
    flops_per_image: float | None = None  # counted once, on the first image evaluated
    peak_memory: int | None = None  # the highest peak of all sessions
    untimed: int = 0  # images counted but not in `seconds` (older progress files; now always 0)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "fingerprint": self.fingerprint,
            "matrix": torch.from_numpy(self.matrix),
            "done": int(self.done),
            "seconds": float(self.seconds),
            "started": self.started,
            "flops_per_image": self.flops_per_image,
            "peak_memory": self.peak_memory,
            "untimed": int(self.untimed),
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: Path) -> _State | None:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            return cls(
                fingerprint=str(payload["fingerprint"]),
                matrix=payload["matrix"].numpy().astype(np.int64),
                done=int(payload["done"]),
                seconds=float(payload["seconds"]),
                started=str(payload["started"]),
                flops_per_image=payload.get("flops_per_image"),
                peak_memory=payload.get("peak_memory"),
                untimed=int(payload.get("untimed", 0)),
            )
        except FileNotFoundError:
            return None
        except Exception:  # unreadable or foreign: start over rather than trust it
            return None


def _matches(result: EvalResult, job: EvalJob, options: EngineOptions, total: int) -> bool:
    """Whether a result on disk was produced by exactly this evaluation (so it needs no redo)."""
    same = (
        result.model_id == job.model_id
        and result.protocol == job.protocol_name
        and result.settings == job.settings()
        and result.checkpoint_sha256 == job.checkpoint_sha256
        and result.variant == job.variant
        and result.dataset == job.dataset_name
        and result.split == job.split
        and result.data_root == job.data_root
        and result.precision == options.precision
        and result.limit == options.limit
        and result.num_images_total == total
    )
    if same and result.status == "server":
        return bool(result.submission) and Path(result.submission).is_file()
    return same


# ---------------------------------------------------------------------------------------------
# Signals: an image is counted whole or not at all


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(f"terminated by signal {signum}")


class _Interrupts:
    """While active (main thread only), SIGINT raises KeyboardInterrupt and SIGTERM `Terminated`,
    except inside `atomic()`: a signal arriving there is raised when the block ends, so a saved
    state never holds an image half counted (matrix updated, counter not)."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending: int | None = None
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is not signal.SIG_IGN:  # keep nohup's choice
                    self.saved[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> bool:
        for signum, handler in self.saved.items():  # None: a handler not set from Python
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if self.pending is not None:  # it came inside an atomic block that raised: it still wins
            signum, self.pending = self.pending, None
            _raise_for(signum)
        return False

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.depth:
            self.pending = signum
        else:
            _raise_for(signum)

    @contextlib.contextmanager
    def atomic(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.pending is not None and not self.depth:
            signum, self.pending = self.pending, None
            _raise_for(signum)


# ---------------------------------------------------------------------------------------------
# The engine


def run_job(
    job: EvalJob,
    options: EngineOptions = EngineOptions(),
    *,
    progress: ProgressCallback | None = None,
    log: LogCallback | None = None,
    phase: PhaseCallback | None = None,
) -> EvalResult:
    """Evaluate `job`; returns (and on rank 0 writes) the result. See the module docstring.

    SIGINT / SIGTERM during the images save the progress and raise KeyboardInterrupt / Terminated.
    """
    say = log or (lambda message: None)
    _check_options(options)
    ranks = setup_distributed(options.device)
    device = resolve_device(options.device, ranks.local_rank)
    output = _prepare_output(options.output)
    total = len(job.dataset)
    if total == 0:
        raise DatasetError(f"the {job.dataset_name} {job.split} split under {job.data_root} has no images")
    subset = _is_subset(job, options, total)
    count = min(total, options.limit) if options.limit else total
    share = list(range(ranks.rank, count, ranks.world_size))  # strided split, no padding
    state_file = progress_path(output, job.model_id, job.protocol_name, ranks, job.variant, job.default_variant)
    result_file = output / job.result_filename

    existing = _finished_result(job, options, total, result_file) if options.resume else None
    if existing is not None:  # a finished, identical evaluation is not redone (every rank agrees)
        say(f"{job.model_id} [{job.protocol_name}]: already evaluated ({result_file}); use --no-resume to redo")
        return existing
    state, fresh = _resume_state(job, options, ranks, share, state_file, say)
    writer = _submission_writer(job, output, ranks, fresh)
    session = _Session(state, ConfusionMatrix.from_numpy(state.matrix, device=device), state_file, options, device)
    done_before = state.done
    with _upstream_numerics(device):
        if state.done < len(share):
            _evaluate_share(job, options, device, share, session, writer, progress, phase)
        session.save()

    evaluated, seconds = _gather(session.matrix, state, ranks, device)
    if writer is not None:
        _barrier(ranks)
    result = _make_result(job, options, ranks, device, session.matrix, writer, evaluated, total, count,
                          seconds, state, subset)
    if ranks.rank == 0:
        if writer is not None:
            result.submission = str(writer.finish(expected_count=count))
        write_result(result, output, job.default_variant)
    _barrier(ranks)
    _drop_state(state_file)
    if state.done == done_before and not fresh:
        say(f"{job.model_id} [{job.protocol_name}]: all images were already counted; result rewritten")
    return result


def _check_options(options: EngineOptions) -> None:
    if options.precision not in PRECISIONS:
        raise ReproError(f"unknown precision '{options.precision}'; use one of {', '.join(PRECISIONS)}")
    if options.limit is not None and options.limit <= 0:
        raise ReproError("--limit must be a positive number of images")
    if options.save_every <= 0 or options.save_every_seconds <= 0:
        raise ReproError("the progress-save interval must be positive")


def _prepare_output(output: str | os.PathLike | None) -> Path:
    """The results folder, created now: fail before hours of work, not at the first save."""
    from repro.paths import results_dir

    folder = results_dir(output)
    if folder.exists() and not folder.is_dir():
        raise ReproError(f"--output {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReproError(f"cannot create the output folder {folder}: {err.strerror}") from None
    return folder


def dataset_count(dataset: Any, unit: str) -> int:
    """Size of a dataset in the unit of its official count (images, or videos for VSPW)."""
    videos = getattr(dataset, "videos", None)
    return len(videos) if unit == "videos" and videos is not None else len(dataset)


def _is_subset(job: EvalJob, options: EngineOptions, total: int) -> bool:
    """Whether the folder holds fewer than the official split; refused unless allowed or --limit."""
    if job.official_count is None:
        return False
    found = dataset_count(job.dataset, job.count_unit) if job.count_unit != "images" else total
    if found >= job.official_count:
        return False
    if not options.allow_subset and options.limit is None:
        raise DatasetError(
            f"{job.dataset_name} {job.split} under {job.data_root} has {found} of the official "
            f"{job.official_count} {job.count_unit}; fetch the whole split (`repro fetch --dataset "
            f"{job.dataset_name}`) or pass --allow-subset (the result is then partial, never compared)"
        )
    return True


def _finished_result(job: EvalJob, options: EngineOptions, total: int, result_file: Path) -> EvalResult | None:
    if not result_file.is_file():
        return None
    try:
        existing = read_result(result_file)
    except ReproError:
        return None
    return existing if _matches(existing, job, options, total) else None


def _resume_state(job, options, ranks, share, state_file, say) -> tuple[_State, bool]:
    """The saved progress of this exact setup, or a fresh state; (state, fresh)."""
    fingerprint = _fingerprint(job, options, ranks, [job.dataset.ids[i] for i in share])
    state = _State.load(state_file) if options.resume else None
    if state is not None and state.fingerprint != fingerprint:
        say(f"{job.model_id} [{job.protocol_name}]: ignoring saved progress from a different setup")
        state = None
    if state is not None and (state.done > len(share) or state.matrix.shape != (job.num_classes,) * 2):
        state = None
    if state is None:
        empty = np.zeros((job.num_classes,) * 2, np.int64)
        return _State(fingerprint, empty, 0, 0.0, datetime.now(timezone.utc).isoformat()), True
    if state.done:
        say(f"{job.model_id} [{job.protocol_name}]: resuming after {state.done} of {len(share)} images")
    return state, False


def _submission_writer(job: EvalJob, output: Path, ranks: _Ranks, fresh: bool):
    if not job.server:
        return None
    from repro.datasets import CityscapesSubmissionWriter

    folder = output / SUBMISSION_DIR / job.result_filename[: -len(".json")]
    if fresh and ranks.rank == 0 and folder.exists():
        shutil.rmtree(folder)  # predictions of an older, different run must not be zipped
    _barrier(ranks)
    return CityscapesSubmissionWriter(folder)


def _drop_state(state_file: Path) -> None:
    state_file.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        state_file.parent.rmdir()  # only when no other run keeps progress there


class _Session:
    """One rank's running share: the matrix and counter, saved every N images or T seconds."""

    def __init__(self, state: _State, matrix: ConfusionMatrix, state_file: Path, options: EngineOptions,
                 device: torch.device):
        self.state, self.matrix, self.state_file, self.device = state, matrix, state_file, device
        self.every, self.every_seconds = options.save_every, options.save_every_seconds
        self.seconds_before = state.seconds
        self.start = self.last_save = time.perf_counter()
        self.since_save = 0

    def restart_clock(self) -> None:
        """Time counts from here: images/s measures evaluation, not model building and loading."""
        self.start = self.last_save = time.perf_counter()

    @contextlib.contextmanager
    def clock_paused(self):
        """The time spent inside is left out of the evaluation's seconds."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.start += time.perf_counter() - began

    def counted(self) -> None:
        """One more image is fully in the matrix (call inside `_Interrupts.atomic`)."""
        self.state.done += 1
        self.since_save += 1
        if self.since_save >= self.every or time.perf_counter() - self.last_save >= self.every_seconds:
            self.save()

    def save(self) -> None:
        now = time.perf_counter()
        self.state.matrix = self.matrix.to_numpy()
        self.state.seconds = self.seconds_before + (now - self.start)
        peaks = [p for p in (self.state.peak_memory, _peak_memory(self.device)) if p is not None]
        self.state.peak_memory = max(peaks) if peaks else None
        self.state.save(self.state_file)
        self.last_save, self.since_save = now, 0


def _peak_memory(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return process_peak_rss_bytes()


@contextlib.contextmanager
def _weight_init_skipped():
    """torch.nn.init's in-place initialisers as no-ops: building a network then skips drawing
    random weights (about half a second for a ResNet-50 segmentor) that a strict checkpoint load
    overwrites anyway."""
    names = [name for name in dir(torch.nn.init) if name.endswith("_") and not name.startswith("_")]
    saved = {name: getattr(torch.nn.init, name) for name in names}
    for name in names:
        setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


def _build_model(job: EvalJob, device: torch.device, tell: PhaseCallback) -> torch.nn.Module:
    tell("building model")
    # load_weights loads strictly (every weight but BN's num_batches_tracked counters)
    with _weight_init_skipped() if job.load_weights is not None else contextlib.nullcontext():
        model = job.build_model()
    if job.load_weights is not None:
        tell("loading checkpoint")
        job.load_weights(model)
    return model.eval().to(device)


def _flop_observer(model: torch.nn.Module, predictor: Predictor) -> tuple[FlopObserver, int] | None:
    """Watches the first image's real forward passes for their FLOPs, where that is exact."""
    return (FlopObserver(), predictor.oom_retries) if FlopObserver.observable(model) else None


def _observed_flops(observed: tuple[FlopObserver, int] | None, predictor: Predictor) -> float | None:
    observer, retries = observed or (None, 0)
    if observer is None or retries != predictor.oom_retries or not observer.complete or observer.total <= 0:
        return None  # an out-of-memory retry would count the failed forward too
    return float(observer.total)


def _evaluate_share(job, options, device, share, session: _Session, writer, progress, phase) -> None:
    """Predict and count the images of this rank's share not counted yet."""
    state = session.state
    model = _build_model(job, device, phase or (lambda name: None))
    predictor = Predictor(
        model, job.protocol, job.num_classes, getattr_or_key(job.protocol, "flip_pairs", ()), device,
        max_batch=options.max_batch, precision=options.precision, resize_on_cpu=options.resize_on_cpu,
    )
    samples = _TransformedSamples(job.dataset, share[state.done :], job.protocol)
    workers = _default_workers() if options.workers is None else max(0, options.workers)
    if phase:
        phase("evaluating")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    count_flops_next = state.flops_per_image is None
    session.restart_clock()
    if progress:
        progress(state.done, len(share))
    try:
        with _Interrupts() as interrupts:
            for item in _loader(samples, workers):
                if isinstance(item, _Failure):
                    raise item.error
                sample_id, image, label, size = item
                observed = _flop_observer(model, predictor) if count_flops_next else None
                with observed[0] if observed else contextlib.nullcontext():
                    scores = predictor(image, size)
                prediction = scores.argmax(dim=0)  # first maximum on ties, as upstream
                del scores
                with interrupts.atomic():
                    _count_image(job, session.matrix, writer, sample_id, prediction, label, size, device)
                    session.counted()
                if count_flops_next:
                    count_flops_next = False
                    state.flops_per_image = _observed_flops(observed, predictor)
                    if state.flops_per_image is None:  # count on a "meta" twin: no arithmetic
                        with session.clock_paused():  # that counting (imports, a second) is not timed
                            state.flops_per_image = count_flops(
                                model, job.protocol, job.num_classes, tuple(image.shape), size,
                                flip_pairs=getattr_or_key(job.protocol, "flip_pairs", ()), max_batch=options.max_batch)
                if progress:
                    progress(state.done, len(share))
    except RuntimeError as err:
        session.save()
        if device.type == "cuda" and "out of memory" in str(err).lower():
            raise ReproError(
                f"{job.model_id} [{job.protocol_name}]: out of GPU memory on {device}; "
                f"retry with --max-batch 1, another GPU, or --precision bf16 (not comparable)"
            ) from None
        raise
    except BaseException:
        session.save()  # the matrix holds exactly `done` images: safe to resume from
        raise
    del predictor, model
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _count_image(job, matrix, writer, sample_id, prediction, label, size, device) -> None:
    if writer is not None:
        writer.add(sample_id, prediction.to(torch.int64).cpu().numpy())
    elif label is None:
        raise DatasetError(f"{job.dataset_name} sample {sample_id} has no label in split {job.split}")
    else:
        if tuple(label.shape) != tuple(size):
            raise DatasetError(f"label of {sample_id} is {tuple(label.shape)}, image is {tuple(size)}")
        matrix.update(prediction, label.to(device, non_blocking=True))


def getattr_or_key(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _barrier(ranks: _Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def _gather(matrix: ConfusionMatrix, state: _State, ranks: _Ranks, device: torch.device) -> tuple[int, float]:
    """Sum the confusion matrices and image counts over ranks; wall time = slowest rank."""
    if not ranks.distributed:
        return state.done, state.seconds
    where = _reduce_device(device)
    summed = matrix.matrix.to(where)
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    matrix.matrix = summed.to(matrix.matrix.device)
    counts = torch.tensor([state.done], dtype=torch.int64, device=where)
    dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    seconds = torch.tensor([state.seconds], dtype=torch.float64, device=where)
    dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
    return int(counts.item()), float(seconds.item())


def _metrics(matrix: ConfusionMatrix, class_names: Sequence[str]) -> dict[str, Any]:
    scores = matrix.scores()
    miou = scores.miou * 100.0
    metrics = {
        "miou": miou,
        "miou_rounded": round(miou, 2),
        "aacc": scores.aacc * 100.0,
        "macc": scores.macc * 100.0,
        "per_class_iou": scores.per_class(list(class_names)),
    }
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in metrics.items()}


def _performance(state: _State, device: torch.device, ranks: _Ranks, evaluated: int, seconds: float) -> dict:
    """images/s, s/image, peak memory, FLOPs per image and the share of the device's fp32 peak."""
    cuda = device.type == "cuda"
    timed = evaluated - state.untimed * ranks.world_size  # each rank leaves its counted image out
    per_second = (timed / seconds) if seconds > 0 and timed > 0 else 0.0
    peak = device_peak_flops(torch.cuda.get_device_name(device)) if cuda else None
    return {
        "images_per_second": per_second,
        "seconds_per_image": (seconds / timed) if seconds > 0 and timed > 0 else None,
        "peak_memory_bytes": state.peak_memory,
        "peak_memory_kind": None if state.peak_memory is None else ("cuda-allocated" if cuda else "process-rss"),
        "flops_per_image": state.flops_per_image,
        "device_peak_flops": peak,
        "peak_flops_fraction": peak_fraction(state.flops_per_image, per_second, ranks.world_size, peak),
    }


def _make_result(job, options, ranks, device, matrix, writer, evaluated, total, count, seconds, state, subset):
    partial_reason = "subset" if subset else ("limit" if count < total else None)
    status = "server" if writer is not None else ("partial" if partial_reason else "complete")
    cuda = device.type == "cuda"
    return EvalResult(
        model_id=job.model_id,
        protocol=job.protocol_name,
        settings=job.settings(),
        dataset=job.dataset_name,
        split=job.split,
        data_root=job.data_root,
        status=status,
        **(_metrics(matrix, job.class_names) if writer is None else {}),
        num_images=evaluated,
        num_images_total=total,
        num_images_official=job.official_count if job.count_unit == "images" else None,
        limit=options.limit,
        partial_reason=partial_reason,
        variant=job.variant,
        checkpoint=job.checkpoint,
        checkpoint_sha256=job.checkpoint_sha256,
        precision=options.precision,
        device=_device_label(device),
        torch_version=torch.__version__,
        cuda_version=torch.version.cuda if cuda else None,
        cudnn_version=torch.backends.cudnn.version() if cuda else None,
        world_size=ranks.world_size,
        engine={"max_batch": options.max_batch, "resize_on_cpu": options.resize_on_cpu,
                "channels_last": Predictor.default_channels_last(device, options.resize_on_cpu)},
        repro_version=repro.__version__,
        git_commit=_git_commit(),
        started=datetime.fromisoformat(state.started),
        finished=datetime.now(timezone.utc),
        seconds=seconds,
        **_performance(state, device, ranks, evaluated, seconds),
        selftest=latest_selftest(_device_label(device)),
    )


# ---------------------------------------------------------------------------------------------
# Public API


def build_job(
    model_id: str,
    protocol_name: str,
    *,
    checkpoint: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    variant: str | None = None,
) -> EvalJob:
    """Resolve a manifest row, its protocol, checkpoint and dataset into an EvalJob.

    `variant` None is the row's default forward (the one its checkpoint was trained with)."""
    from repro.datasets import DATASETS, open_dataset
    from repro.manifest import load_manifest
    from repro.models import row_variant
    from repro.paths import dataset_root

    entry = load_manifest().get(model_id)
    variant = row_variant(entry, variant)
    protocol = entry.protocols.get(protocol_name)
    if protocol is None:
        have = ", ".join(entry.protocols) or "none"
        raise ReproError(f"{entry.id} has no '{protocol_name}' protocol (it has: {have})")
    checkpoint_file = resolve_checkpoint(entry.id, checkpoint)
    root = dataset_root(entry.dataset, data_root)
    if not root.is_dir():
        raise DatasetError(
            f"dataset folder {root} does not exist; download it with `repro fetch --dataset {entry.dataset}` or pass "
            f"--data-root (or set $REPRO_DATA) to the folder holding {root.name}"
        )
    dataset = open_dataset(entry.dataset, root, entry.eval_split)
    spec = DATASETS[entry.dataset]
    if spec.num_classes != entry.num_classes:
        raise ReproError(f"{entry.id} predicts {entry.num_classes} classes but {entry.dataset} has {spec.num_classes}")
    server = entry.eval == "server" or not getattr(dataset, "has_labels", True)

    def build_model() -> torch.nn.Module:
        from repro.models import build_segmentor

        return build_segmentor(entry.id, variant=variant)

    def load_weights(model: torch.nn.Module) -> None:
        from repro.models import load_checkpoint

        load_checkpoint(model, checkpoint_file)

    return EvalJob(
        model_id=entry.id,
        protocol_name=protocol_name,
        protocol=protocol,
        dataset=dataset,
        dataset_name=entry.dataset,
        split=entry.eval_split,
        data_root=str(root.resolve()),
        class_names=tuple(spec.class_names),
        build_model=build_model,
        checkpoint=str(checkpoint_file.resolve()),
        checkpoint_sha256=file_digest(checkpoint_file),  # one hash per file, maybe started ahead
        server=server,
        load_weights=load_weights,
        official_count=spec.splits.get(entry.eval_split),
        count_unit=spec.count_unit,
        variant=variant,
        default_variant=entry.default_variant,
    )


def evaluate(
    model_id: str,
    protocol_name: str,
    *,
    checkpoint: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    device: str = "auto",
    precision: str = "fp32",
    limit: int | None = None,
    output: str | os.PathLike | None = None,
    resume: bool = True,
    max_batch: int = 4,
    workers: int | None = None,
    save_every: int = 200,
    save_every_seconds: float = 300.0,
    resize_on_cpu: bool = False,
    allow_subset: bool = False,
    variant: str | None = None,
    progress: ProgressCallback | None = None,
    log: LogCallback | None = None,
    phase: PhaseCallback | None = None,
) -> EvalResult:
    """Evaluate one manifest row under one protocol ('single', 'flip' or 'ms+flip').

    Writes `<output>/<id>__<protocol>.json` (output None: repro.paths.results_dir()) and returns
    the result; resumes an interrupted run and returns a finished identical one without redoing
    it unless `resume=False`. A dataset folder smaller than the official split is refused unless
    `allow_subset` (or `limit`); its result is then partial (`partial_reason` "subset"). `variant`:
    "training-era" or "upstream-head" (None = the row's default); recorded in the result.
    """
    job = build_job(model_id, protocol_name, checkpoint=checkpoint, data_root=data_root, variant=variant)
    options = EngineOptions(
        device=device, precision=precision, limit=limit, output=output, resume=resume,
        max_batch=max_batch, workers=workers, save_every=save_every, save_every_seconds=save_every_seconds,
        resize_on_cpu=resize_on_cpu, allow_subset=allow_subset,
    )
    return run_job(job, options, progress=progress, log=log, phase=phase)
