"""The evaluation engine: one model x one dataset split x one test protocol -> one result file.

The state of a run is the dataset-wide confusion matrix (no prediction or full-resolution score
map is kept beyond the image being evaluated). It is saved atomically every `save_every` images
under `<output>/.progress/`, tagged with everything that determines the numbers (model, protocol
settings, checkpoint digest, dataset root and split, precision, limit, rank layout), so an
interrupted run resumes where it stopped and a stale state is never mixed into a new run.

Under torchrun (or any initialised default process group) each rank evaluates a strided share of
the images (every image exactly once, no sampler padding), the int64 confusion matrices are
summed with all_reduce, and rank 0 writes the result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

import repro
from repro.errors import CheckpointError, DatasetError, ReproError
from repro.fetch.download import sha256_of
from repro.fileio import atomic_path
from repro.inference import PRECISIONS, Predictor
from repro.metrics import ConfusionMatrix
from repro.results import EvalResult, read_result, result_filename, write_result

PROGRESS_DIR = ".progress"
SUBMISSION_DIR = "submissions"
STATE_VERSION = 1

ProgressCallback = Callable[[int, int], None]  # (images done on this rank, images of this rank)
LogCallback = Callable[[str], None]


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

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def settings(self) -> dict:
        if hasattr(self.protocol, "model_dump"):
            return self.protocol.model_dump(mode="json")
        return json.loads(json.dumps(dict(self.protocol)))


@dataclass(frozen=True)
class EngineOptions:
    device: str = "auto"
    precision: str = "fp32"
    limit: int | None = None
    output: str | os.PathLike = "results"
    resume: bool = True
    max_batch: int = 4  # crops (or whole images) per forward; halved on CUDA out-of-memory
    workers: int | None = None  # data-loading processes; None = min(4, CPUs - 1)
    save_every: int = 200  # images between progress saves
    resize_on_cpu: bool = False  # final per-output resize on the CPU, as upstream


# ---------------------------------------------------------------------------------------------
# Small helpers


_digest_cache: dict[tuple[str, int, int], str] = {}


def checkpoint_digest(path: str | os.PathLike) -> str:
    """sha256 of a checkpoint file (cached per path, size and mtime within the process)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digest_cache:
        _digest_cache[key] = sha256_of(path)
    return _digest_cache[key]


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
    return max(0, min(4, (os.cpu_count() or 1) - 1))


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


def _as_is(item):
    return item


def _init_worker(_worker_id: int) -> None:
    """One thread per loader process: the workers run in parallel already, and OpenCV's pool
    inherited through fork can stall. (cv2.resize gives the same pixels with any thread count.)"""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _loader(samples: _TransformedSamples, workers: int):
    return torch.utils.data.DataLoader(
        samples,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        collate_fn=_as_is,
        worker_init_fn=_init_worker if workers > 0 else None,
        persistent_workers=False,
    )


# ---------------------------------------------------------------------------------------------
# Progress state


def progress_path(output: Path, model_id: str, protocol_name: str, ranks: _Ranks) -> Path:
    stem = result_filename(model_id, protocol_name)[: -len(".json")]
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

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "fingerprint": self.fingerprint,
            "matrix": torch.from_numpy(self.matrix),
            "done": int(self.done),
            "seconds": float(self.seconds),
            "started": self.started,
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
# The engine


def run_job(
    job: EvalJob,
    options: EngineOptions = EngineOptions(),
    *,
    progress: ProgressCallback | None = None,
    log: LogCallback | None = None,
) -> EvalResult:
    """Evaluate `job`; returns (and on rank 0 writes) the result. See the module docstring."""
    say = log or (lambda message: None)
    if options.precision not in PRECISIONS:
        raise ReproError(f"unknown precision '{options.precision}'; use one of {', '.join(PRECISIONS)}")
    if options.limit is not None and options.limit <= 0:
        raise ReproError("--limit must be a positive number of images")
    if options.save_every <= 0:
        raise ReproError("the progress-save interval must be positive")

    ranks = setup_distributed(options.device)
    device = resolve_device(options.device, ranks.local_rank)
    output = Path(options.output)
    # Fail before hours of work, not at the first progress save.
    if output.exists() and not output.is_dir():
        raise ReproError(f"--output {output} is a file, not a folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReproError(f"cannot create the output folder {output}: {err.strerror}") from None
    total = len(job.dataset)
    if total == 0:
        raise DatasetError(f"the {job.dataset_name} {job.split} split under {job.data_root} has no images")
    count = min(total, options.limit) if options.limit else total
    all_ids = job.dataset.ids
    share = list(range(ranks.rank, count, ranks.world_size))  # strided split, no padding
    share_ids = [all_ids[i] for i in share]
    state_file = progress_path(output, job.model_id, job.protocol_name, ranks)
    result_file = output / result_filename(job.model_id, job.protocol_name)

    # A finished, identical evaluation is not redone (every rank decides the same way).
    if options.resume and result_file.is_file():
        try:
            existing = read_result(result_file)
        except ReproError:
            existing = None
        if existing is not None and _matches(existing, job, options, total):
            say(f"{job.model_id} [{job.protocol_name}]: already evaluated ({result_file}); use --no-resume to redo")
            return existing

    fingerprint = _fingerprint(job, options, ranks, share_ids)
    state = _State.load(state_file) if options.resume else None
    if state is not None and state.fingerprint != fingerprint:
        say(f"{job.model_id} [{job.protocol_name}]: ignoring saved progress from a different setup")
        state = None
    if state is not None and (state.done > len(share) or state.matrix.shape != (job.num_classes,) * 2):
        state = None
    fresh = state is None
    if fresh:
        state = _State(fingerprint, np.zeros((job.num_classes,) * 2, np.int64), 0, 0.0,
                       datetime.now(timezone.utc).isoformat())
    elif state.done:
        say(f"{job.model_id} [{job.protocol_name}]: resuming after {state.done} of {len(share)} images")

    writer = None
    if job.server:
        from repro.datasets import CityscapesSubmissionWriter

        folder = output / SUBMISSION_DIR / result_filename(job.model_id, job.protocol_name)[: -len(".json")]
        if fresh and ranks.rank == 0 and folder.exists():
            shutil.rmtree(folder)  # predictions of an older, different run must not be zipped
        _barrier(ranks)
        writer = CityscapesSubmissionWriter(folder)

    matrix = ConfusionMatrix.from_numpy(state.matrix, device=device)
    done_before = state.done
    clock = {"seconds_before": state.seconds, "start": time.perf_counter()}

    def checkpoint_state() -> None:
        state.matrix = matrix.to_numpy()
        state.seconds = clock["seconds_before"] + (time.perf_counter() - clock["start"])
        state.save(state_file)

    with _upstream_numerics(device):
        if state.done < len(share):
            model = job.build_model().eval().to(device)
            predictor = Predictor(
                model, job.protocol, job.num_classes, getattr_or_key(job.protocol, "flip_pairs", ()), device,
                max_batch=options.max_batch, precision=options.precision, resize_on_cpu=options.resize_on_cpu,
            )
            samples = _TransformedSamples(job.dataset, share[state.done :], job.protocol)
            workers = _default_workers() if options.workers is None else max(0, options.workers)
            clock["start"] = time.perf_counter()  # images/s measures evaluation, not model loading
            if progress:
                progress(state.done, len(share))
            since_save = 0
            try:
                for item in _loader(samples, workers):
                    if isinstance(item, _Failure):
                        raise item.error
                    sample_id, image, label, (height, width) = item
                    scores = predictor(image, (height, width))
                    prediction = scores.argmax(dim=0)  # first maximum on ties, as upstream
                    del scores
                    if writer is not None:
                        writer.add(sample_id, prediction.to(torch.int64).cpu().numpy())
                    elif label is None:
                        raise DatasetError(f"{job.dataset_name} sample {sample_id} has no label in split {job.split}")
                    else:
                        if tuple(label.shape) != (height, width):
                            raise DatasetError(f"label of {sample_id} is {tuple(label.shape)}, image is {(height, width)}")
                        matrix.update(prediction, label.to(device, non_blocking=True))
                    state.done += 1
                    since_save += 1
                    if since_save >= options.save_every:
                        checkpoint_state()
                        since_save = 0
                    if progress:
                        progress(state.done, len(share))
            except RuntimeError as err:
                checkpoint_state()
                if device.type == "cuda" and "out of memory" in str(err).lower():
                    raise ReproError(
                        f"{job.model_id} [{job.protocol_name}]: out of GPU memory on {device}; "
                        f"retry with --max-batch 1, another GPU, or --precision bf16 (not comparable)"
                    ) from None
                raise
            except BaseException:
                checkpoint_state()  # the matrix holds exactly `done` images: safe to resume from
                raise
            del predictor, model
            if device.type == "cuda":
                torch.cuda.empty_cache()
        checkpoint_state()

    session_images = state.done - done_before
    evaluated, seconds = _gather(matrix, state, ranks, device)
    if writer is not None:
        _barrier(ranks)
    finished = datetime.now(timezone.utc)

    result = _make_result(job, options, ranks, device, matrix, writer, evaluated, total, count, seconds,
                          datetime.fromisoformat(state.started), finished)
    if ranks.rank == 0:
        if writer is not None:
            result.submission = str(writer.finish(expected_count=count))
        write_result(result, output)
    _barrier(ranks)
    state_file.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        state_file.parent.rmdir()  # only when no other run keeps progress there
    if session_images == 0 and not fresh:
        say(f"{job.model_id} [{job.protocol_name}]: all images were already counted; result rewritten")
    return result


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


def _make_result(job, options, ranks, device, matrix, writer, evaluated, total, count, seconds, started, finished):
    status = "server" if writer is not None else ("partial" if count < total else "complete")
    metrics: dict[str, Any] = {}
    if writer is None:
        scores = matrix.scores()
        miou = scores.miou * 100.0
        metrics = {
            "miou": miou,
            "miou_rounded": round(miou, 2),
            "aacc": scores.aacc * 100.0,
            "macc": scores.macc * 100.0,
            "per_class_iou": scores.per_class(list(job.class_names)),
        }
        metrics = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in metrics.items()}
    cuda = device.type == "cuda"
    return EvalResult(
        model_id=job.model_id,
        protocol=job.protocol_name,
        settings=job.settings(),
        dataset=job.dataset_name,
        split=job.split,
        data_root=job.data_root,
        status=status,
        **metrics,
        num_images=evaluated,
        num_images_total=total,
        limit=options.limit,
        checkpoint=job.checkpoint,
        checkpoint_sha256=job.checkpoint_sha256,
        precision=options.precision,
        device=_device_label(device),
        torch_version=torch.__version__,
        cuda_version=torch.version.cuda if cuda else None,
        cudnn_version=torch.backends.cudnn.version() if cuda else None,
        world_size=ranks.world_size,
        engine={"max_batch": options.max_batch, "resize_on_cpu": options.resize_on_cpu},
        repro_version=repro.__version__,
        git_commit=_git_commit(),
        started=started,
        finished=finished,
        seconds=seconds,
        images_per_second=(evaluated / seconds) if seconds > 0 else 0.0,
    )


# ---------------------------------------------------------------------------------------------
# Public API


def resolve_checkpoint(model_id: str, checkpoint: str | os.PathLike | None) -> Path:
    """The checkpoint file to load: an explicit path, else the cached download."""
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if path.is_dir():
            raise CheckpointError(f"checkpoint {path} is a folder; pass the .pth file inside it")
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
        return path
    try:
        from repro.fetch import checkpoint_path
    except ImportError:
        raise CheckpointError(f"no cached checkpoint for {model_id}; run `repro fetch {model_id}` or pass --checkpoint") from None
    try:
        path = checkpoint_path(model_id)
    except ReproError:
        path = None
    if path is None or not Path(path).is_file():
        raise CheckpointError(f"no cached checkpoint for {model_id}; run `repro fetch {model_id}` or pass --checkpoint PATH")
    return Path(path)


def build_job(
    model_id: str,
    protocol_name: str,
    *,
    checkpoint: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
) -> EvalJob:
    """Resolve a manifest row, its protocol, checkpoint and dataset into an EvalJob."""
    from repro.datasets import DATASETS, open_dataset
    from repro.manifest import load_manifest
    from repro.paths import dataset_root

    entry = load_manifest().get(model_id)
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
        from repro.models import build_segmentor, load_checkpoint

        model = build_segmentor(entry.id)
        load_checkpoint(model, checkpoint_file)
        return model.eval()

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
        checkpoint_sha256=checkpoint_digest(checkpoint_file),
        server=server,
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
    output: str | os.PathLike = "results",
    resume: bool = True,
    max_batch: int = 4,
    workers: int | None = None,
    save_every: int = 200,
    resize_on_cpu: bool = False,
    progress: ProgressCallback | None = None,
    log: LogCallback | None = None,
) -> EvalResult:
    """Evaluate one manifest row under one protocol ('single', 'flip' or 'ms+flip').

    Writes `<output>/<id>__<protocol>.json` and returns the result; resumes an interrupted run
    and returns a finished identical one without redoing it unless `resume=False`.
    """
    job = build_job(model_id, protocol_name, checkpoint=checkpoint, data_root=data_root)
    options = EngineOptions(
        device=device, precision=precision, limit=limit, output=output, resume=resume,
        max_batch=max_batch, workers=workers, save_every=save_every, resize_on_cpu=resize_on_cpu,
    )
    return run_job(job, options, progress=progress, log=log)
