"""Load upstream (sssegmentation) checkpoints into the bundled segmentors.

Accepted input: a path to a file saved with `torch.save`, or an already loaded object; either a
bare state dict or upstream's published format, a dict whose `model` entry is the state dict
(other entries such as the optimizer state are ignored). A `module.` prefix (DataParallel /
DistributedDataParallel) is stripped. Files are read with `weights_only=True`: a pickle that
would run arbitrary code is refused.

Keys are matched exactly. Weights of training-only modules are recognised by
`TRAINING_ONLY_PREFIXES` and skipped; any other key the model lacks, or any model key the
checkpoint lacks, is an error (except BatchNorm's `num_batches_tracked` counters, which do not
affect inference and which torch itself fills in when absent).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError

# Upstream modules that exist in the published state dicts but play no part in TEST mode:
# the auxiliary decoder(s) on an intermediate backbone stage (used for the training loss only).
TRAINING_ONLY_PREFIXES: tuple[str, ...] = ("auxiliary_decoder.",)
# Counters that do not affect inference; tolerated when a checkpoint lacks them.
OPTIONAL_SUFFIXES: tuple[str, ...] = ("num_batches_tracked",)
WRAPPER_PREFIX = "module."

# Well-known class counts, to say which dataset a checkpoint was trained on.
DATASET_BY_NUM_CLASSES = {
    150: "ADE20k",
    19: "Cityscapes",
    182: "COCO-Stuff-10k",
    20: "LIP",
    21: "VOC",
    59: "PASCAL-Context",
    124: "VSPW",
}
# Keys whose first dimension is the class count, in the order they are consulted.
CLASS_COUNT_KEYS = ("memory_module.memory", "decoder_stage2.4.weight", "decoder_cls.conv2.weight")
MAX_LISTED = 3
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = b"\x80"


@dataclass
class LoadReport:
    """What `load_checkpoint` did besides loading the matching weights."""

    skipped: list[str] = field(default_factory=list)  # training-only keys ignored
    missing: list[str] = field(default_factory=list)  # tolerated missing keys (strict=False, counters)
    unexpected: list[str] = field(default_factory=list)  # tolerated unknown keys (strict=False)


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (", ..." if len(keys) > MAX_LISTED else "")


def _model_name(model: nn.Module) -> str:
    return getattr(model, "model_id", None) or getattr(model, "upstream_config", None) or type(model).__name__


def _read_file(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from None
    # torch.save writes a zip archive (current format) or a pickle (legacy format).
    if not (head.startswith(ZIP_MAGIC) or head[:1] == PICKLE_PROTO):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (it starts with {head!r}); download it again")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err).lower()
        if "weights only load failed" in text and ("global" in text or "unsupported class" in text):
            raise CheckpointError(
                f"{path} holds Python objects other than tensors, which are not loaded for safety "
                "(torch.load weights_only=True refused it); re-save just the state dict"
            ) from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint or is truncated; download it again") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError, KeyError, IndexError,
            TypeError) as err:
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint or is truncated ({_first_line(err)}); download it again"
        ) from None


def _first_line(err: BaseException) -> str:
    """The first sentence of an exception's message (torch's are long), or its type name."""
    text = str(err).strip().splitlines()
    first = text[0].split(". ")[0].rstrip(".") if text else ""
    return first[:160] or type(err).__name__


def extract_state_dict(obj: Any, origin: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint object (upstream's {'model': sd} or a bare sd),
    with any `module.` prefix removed."""
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    elif isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{origin} holds no state dict (expected a dict of tensors or {{'model': state_dict}})")
    state_dict: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{origin} is not a state dict: entry {key!r} is a {type(value).__name__}, not a tensor")
        state_dict[key.removeprefix(WRAPPER_PREFIX)] = value
    return state_dict


def _class_count(shapes: Mapping[str, tuple[int, ...]]) -> int | None:
    for key in CLASS_COUNT_KEYS:
        if key in shapes and len(shapes[key]) >= 1:
            return int(shapes[key][0])
    return None


def _dataset_hint(num_classes: int) -> str:
    name = DATASET_BY_NUM_CLASSES.get(num_classes)
    return f" ({name}?)" if name else ""


def load_checkpoint(model: nn.Module, source: str | os.PathLike | Mapping[str, Any], *, strict: bool = True) -> LoadReport:
    """Load `source` (a path, a state dict, or upstream's {'model': state_dict}) into `model`.

    Raises `CheckpointError` (one line) for unreadable/truncated files, pickles that
    weights_only refuses, a class-count mismatch, missing or unexpected keys (with strict=True)
    and shape mismatches. Returns a `LoadReport`.
    """
    if isinstance(source, (str, os.PathLike)):
        origin = str(source)
        state_dict = extract_state_dict(_read_file(Path(source)), origin)
    else:
        origin = "checkpoint"
        state_dict = extract_state_dict(source, origin)

    report = LoadReport()
    report.skipped = [k for k in state_dict if k.startswith(TRAINING_ONLY_PREFIXES)]
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(TRAINING_ONLY_PREFIXES)}
    own = model.state_dict()
    name = _model_name(model)

    ckpt_classes = _class_count({k: tuple(v.shape) for k, v in state_dict.items()})
    model_classes = _class_count({k: tuple(v.shape) for k, v in own.items()})
    if ckpt_classes is not None and model_classes is not None and ckpt_classes != model_classes:
        raise CheckpointError(
            f"this checkpoint has {ckpt_classes} classes{_dataset_hint(ckpt_classes)}, model {name} expects "
            f"{model_classes}{_dataset_hint(model_classes)}; is it the checkpoint of another model?"
        )

    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    required_missing = [k for k in missing if not k.endswith(OPTIONAL_SUFFIXES)]
    report.missing = missing if not strict else [k for k in missing if k.endswith(OPTIONAL_SUFFIXES)]
    if strict and required_missing:
        raise CheckpointError(
            f"{origin} lacks {len(required_missing)} of the {len(own)} weights model {name} needs "
            f"(e.g. {_listing(required_missing)}); is it the checkpoint of another architecture?"
        )
    if strict and unexpected:
        raise CheckpointError(
            f"{origin} has {len(unexpected)} weights model {name} does not know "
            f"(e.g. {_listing(unexpected)}); is it the checkpoint of another architecture?"
        )
    report.unexpected = unexpected if not strict else []

    mismatched = [k for k in state_dict if k in own and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if mismatched:
        first = mismatched[0]
        raise CheckpointError(
            f"{origin}: {len(mismatched)} weights have the wrong shape for model {name}, e.g. {first} is "
            f"{tuple(state_dict[first].shape)} in the checkpoint but {tuple(own[first].shape)} in the model"
        )

    usable = {k: v for k, v in state_dict.items() if k in own}
    # Counters the checkpoint lacks keep the model's values.
    for key in missing:
        if key.endswith(OPTIONAL_SUFFIXES) or not strict:
            usable[key] = own[key]
    model.load_state_dict(usable, strict=True)
    return report
