"""What to evaluate: `EvalJob`, resolved from the manifest by `build_job` (which reads the options
that pick the job: checkpoint, data_root, dataset_roots, variant), and the dataset's fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from repro.engine.options import EngineOptions
from repro.errors import ReproError
from repro.fetch.checkpoints import resolve_checkpoint
from repro.fetch.download import file_digest


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
    build_model: Callable[[], torch.nn.Module] | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    server: bool = False  # no labels: a test-server submission instead of a metric
    load_model: Callable[[Callable[[str], None]], torch.nn.Module] | None = None
    # The official size of the split, in `count_unit` (images, or videos for VSPW); None = unknown,
    # no subset check. A folder with fewer is refused unless EngineOptions.allow_subset.
    official_count: int | None = None
    count_unit: str = "images"
    variant: str = "upstream-head"
    default_variant: str = "upstream-head"  # the row's default: its results keep the plain file name
    upstream_config: str | None = None  # the architecture's memory figures (repro.inference.footprint) on a GPU

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def settings(self) -> dict:
        if hasattr(self.protocol, "model_dump"):
            return self.protocol.model_dump(mode="json")
        return json.loads(json.dumps(dict(self.protocol)))


def dataset_fingerprint(dataset: Any, data_root: str | os.PathLike) -> str | None:
    """sha256 over the sorted (path relative to the data root, size) of the split's image and
    label files, from stat alone (no file is read); None for a dataset that names no files."""
    if not (hasattr(dataset, "image_path") and hasattr(dataset, "label_path")):
        return None
    root = Path(data_root)
    rows = []
    for i in range(len(dataset)):
        for path in (dataset.image_path(i), dataset.label_path(i)):
            if path is not None:
                rows.append(f"{_relative(Path(path), root)}\t{os.stat(path).st_size}")
    return hashlib.sha256("\n".join(sorted(rows)).encode("utf-8")).hexdigest()


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def build_job(model_id: str, protocol_name: str, options: EngineOptions = EngineOptions()) -> EvalJob:
    """Resolve a manifest row, its protocol, checkpoint and dataset into an EvalJob.

    `options.variant` None is the row's default forward (the one its checkpoint was trained with)."""
    from repro.datasets.registry import get_spec
    from repro.datasets.roots import open_dataset, resolve_dataset_root
    from repro.manifest import load_manifest
    from repro.models import load_segmentor, row_variant

    entry = load_manifest().get(model_id)
    variant = row_variant(entry, options.variant)
    protocol = entry.protocols.get(protocol_name)
    if protocol is None:
        have = ", ".join(entry.protocols) or "none"
        raise ReproError(f"{entry.id} has no '{protocol_name}' protocol (it has: {have})")
    checkpoint_file = resolve_checkpoint(entry.id, options.checkpoint)
    root = resolve_dataset_root(entry.dataset, options.data_root, options.dataset_roots)
    dataset = open_dataset(entry.dataset, root, entry.eval_split)  # a missing folder: the one message
    spec = get_spec(entry.dataset)
    if spec.num_classes != entry.num_classes:
        raise ReproError(f"{entry.id} predicts {entry.num_classes} classes but {entry.dataset} has {spec.num_classes}")
    return EvalJob(
        model_id=entry.id, protocol_name=protocol_name, protocol=protocol, dataset=dataset,
        dataset_name=entry.dataset, split=entry.eval_split, data_root=str(root.resolve()),
        class_names=tuple(spec.class_names), load_model=lambda tell: load_segmentor(entry.id, checkpoint_file, variant, tell=tell),
        checkpoint=str(checkpoint_file.resolve()),
        checkpoint_sha256=file_digest(checkpoint_file),  # one hash per file, maybe started ahead
        server=entry.eval == "server" or not getattr(dataset, "has_labels", True),
        official_count=spec.splits.get(entry.eval_split),
        count_unit=spec.count_unit, variant=variant, default_variant=entry.default_variant,
        upstream_config=entry.upstream_config,
    )


