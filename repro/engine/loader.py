"""The read-ahead loader: read + test transform of the next samples in threads of this process,
errors carried back as values."""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from repro.errors import ReproError

PREFETCH_DEPTH = 2  # samples read ahead (at least) by the loader threads


class Failure:
    def __init__(self, error: ReproError):
        self.error = error


class TransformedSamples(torch.utils.data.Dataset):
    """Reads sample `indices[k]` and applies the protocol's test transform."""

    def __init__(self, dataset: Any, indices: Sequence[int], protocol: Any):
        self.dataset = dataset
        self.indices = list(indices)
        self.protocol = protocol

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        from repro.inference.transforms import test_transform

        try:
            sample = self.dataset[self.indices[k]]
            image = test_transform(sample.image, self.protocol)
        except ReproError as err:  # travels back intact instead of as a wrapped traceback
            return Failure(err)
        label = None if sample.label is None else torch.from_numpy(np.asarray(sample.label, dtype=np.int64))
        return sample.id, image, label, tuple(sample.image.shape[:2])


def default_workers() -> int:
    """Loader threads: one on a machine of one or two cores (more only compete with the compute
    threads), else up to 4."""
    cpus = os.cpu_count() or 1
    return 1 if cpus <= 2 else min(4, cpus - 1)


def read_ahead(samples: TransformedSamples, threads: int, depth: int):
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


def loader(samples: TransformedSamples, workers: int):
    """`workers` loader threads reading ahead; 0: each sample read in the calling thread."""
    if workers <= 0:
        return (samples[k] for k in range(len(samples)))
    return read_ahead(samples, workers, depth=max(PREFETCH_DEPTH, 2 * workers))
