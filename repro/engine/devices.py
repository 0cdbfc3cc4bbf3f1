"""Devices and ranks: the one parser of a --device value, the process group, and the gather
the sinks merge through.

Under torchrun (or any initialised default process group) each rank evaluates a strided share of
the images (every image once, no sampler padding); `Collective.gather` brings every rank's
object to every rank, in rank order, and each sink merges what it gathered on its own terms.
"""

from __future__ import annotations

import os
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
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"


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
        gathered: list[Any] = [None] * self.ranks.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.ranks.distributed:
            dist.barrier()
