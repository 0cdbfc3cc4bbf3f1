"""Devices and ranks: the one parser of a --device value, the process group, and the gather
the sinks merge through.

Under torchrun (or any initialised default process group) each rank evaluates a strided share of
the images (every image once, no sampler padding); `Collective.gather` brings every rank's
object to every rank, in rank order, and each sink merges what it gathered on its own terms.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from repro.engine.options import parse_device
from repro.errors import ReproError
from repro.text import counted

def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> a torch device (under torchrun 'cuda' = cuda:LOCAL_RANK)."""
    kind, index = parse_device(device)
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ReproError(f"device '{device}' was requested but CUDA is not available here; use --device cpu")
    index = local_rank if index is None else index
    if not 0 <= index < torch.cuda.device_count():
        raise ReproError(f"device '{device}' does not exist: this machine has {counted(torch.cuda.device_count(), 'GPU')}")
    return torch.device("cuda", index)


def device_label(device: torch.device) -> str:
    """'cpu', or 'cuda:0 (NVIDIA H200)': how results, selftest records and messages name a device."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"


def _driver_version() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else None


def environment(device: torch.device) -> dict[str, Any]:
    """The machine and software a device computes with: what a result and a selftest record cite."""
    cuda = device.type == "cuda"
    return {
        "device": device_label(device),
        "driver": _driver_version() if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


@dataclass(frozen=True)
class Ranks:
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


def setup_distributed(device: str = "auto") -> Ranks:
    """Join the default process group if one exists or torchrun asked for one (WORLD_SIZE > 1).

    The group is created once and kept for the whole process (the CLI evaluates several models).
    """
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return Ranks()
    if not dist.is_available():
        raise ReproError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    local_rank = _env_int("LOCAL_RANK", 0)
    use_cuda = resolve_device(device, local_rank).type == "cuda"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size(), local_rank)


class Collective:
    """What the ranks of one run exchange: picklable objects (numpy arrays, ints, lists), gathered
    to every rank in rank order; a barrier. One process: the object alone, no communication."""

    def __init__(self, ranks: Ranks):
        self.ranks = ranks

    def gather(self, value: Any) -> list[Any]:
        if not self.ranks.distributed:
            return [value]
        with _lost_contact(self.ranks):
            return self._all_gather(value)

    def barrier(self) -> None:
        if self.ranks.distributed:
            with _lost_contact(self.ranks):
                self._barrier()

    # the transport (torch.distributed); tests replace these two with threads of one process
    def _all_gather(self, value: Any) -> list[Any]:
        gathered: list[Any] = [None] * self.ranks.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def _barrier(self) -> None:
        dist.barrier()


@contextlib.contextmanager
def _lost_contact(ranks: Ranks):
    """A rank that died (interrupted, killed) breaks the others' next exchange: one line, and
    each rank's saved progress lets the same command resume them all."""
    try:
        yield
    except RuntimeError as err:  # gloo / nccl: connection closed, timeout, aborted
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ReproError(f"rank {ranks.rank} of {ranks.world_size} lost contact with the other ranks ({first[:160]}); "
                         "each rank's progress is saved: run the same command on every rank to resume") from None
