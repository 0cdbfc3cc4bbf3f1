"""Load upstream (sssegmentation) checkpoints into the bundled segmentors.

Accepted input: a path to a file saved with `torch.save` (zip or legacy format), or an already
loaded object; either a bare state dict or one of upstream's containers, a dict whose `model`
entry is the state dict (other entries such as epoch counters, optimizer or grad-scaler state
are ignored; `ema=True` takes `model_ema`). A `module.` prefix (DataParallel /
DistributedDataParallel) is stripped. Files are read with `weights_only=True`: a pickle that
would run arbitrary code is refused.

Keys are matched exactly. Weights of training-only modules are recognised by
`TRAINING_ONLY_PREFIXES` and skipped; any other key the model lacks, or any model key the
checkpoint lacks, is an error (except BatchNorm's `num_batches_tracked` counters, which do not
affect inference and which torch itself fills in when absent). A module may take a shape from
the checkpoint before the comparison (`adapt_to_checkpoint`: the ViT position-embedding grid).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..datasets.registry import dataset_of_class_count
from ..errors import CheckpointError, first_sentence
from ..fetch.cache import ZIP_MAGIC, checkpoint_head

# Upstream modules that exist in the published state dicts but play no part in TEST mode:
# the auxiliary decoder(s) on an intermediate backbone stage (used for the training loss only).
TRAINING_ONLY_PREFIXES: tuple[str, ...] = ("auxiliary_decoder.",)
# Counters that do not affect inference; tolerated when a checkpoint lacks them.
OPTIONAL_SUFFIXES: tuple[str, ...] = ("num_batches_tracked",)
WRAPPER_PREFIX = "module."

# Keys whose first dimension is the class count, in the order they are consulted.
MEMORY_KEY = "memory_module.memory"
CLASS_COUNT_KEYS = (MEMORY_KEY, "decoder_stage2.4.weight", "decoder_cls.conv2.weight")
MAX_LISTED = 3


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
    head = checkpoint_head(path)  # torch.save's zip archive (current format) or pickle (legacy)
    try:
        # a zip archive is memory-mapped: its tensors are copied into the model straight from the
        # page cache instead of being read into memory first (0.22 -> 0.04 s for 350 MB here)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=head.startswith(ZIP_MAGIC))
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
    lines = str(err).strip().splitlines()
    return (first_sentence(lines[0]) if lines else "") or type(err).__name__


# Containers upstream's training scripts wrote, newest last: 2021 {'epoch', 'model', 'optimizer'},
# 2022 on {'cur_epoch', 'cur_iter', 'optimizer', 'model'}, re-saved {'model'}, and current training
# may add 'model_ema' (an exponential moving average of the weights) and 'grad_scaler'.
# Upstream's test script evaluates 'model' unless asked for --ema: so do we.
MODEL_KEY, EMA_KEY, OTHER_STATE_KEY = "model", "model_ema", "state_dict"


def _select_weights(obj: Any, origin: str, ema: bool) -> Any:
    """The state-dict part of a loaded container (the object itself when it is a bare state dict)."""
    if not isinstance(obj, Mapping):
        return obj
    wanted = EMA_KEY if ema else MODEL_KEY
    if isinstance(obj.get(wanted), Mapping):
        return obj[wanted]
    if ema:
        raise CheckpointError(f"{origin} holds no '{EMA_KEY}' weights (it has: {_listing(sorted(map(str, obj)))})")
    if isinstance(obj.get(EMA_KEY), Mapping):
        raise CheckpointError(
            f"{origin} holds only '{EMA_KEY}' (the moving average of the weights), not the '{MODEL_KEY}' weights "
            f"upstream evaluates and documents; load it with ema=True to use them anyway"
        )
    if isinstance(obj.get(OTHER_STATE_KEY), Mapping):
        return obj[OTHER_STATE_KEY]
    return obj


def extract_state_dict(obj: Any, origin: str = "checkpoint", *, ema: bool = False) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint object (any container above, or a bare state
    dict), with any `module.` prefix removed; `ema=True` takes 'model_ema' instead of 'model'."""
    obj = _select_weights(obj, origin, ema)
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
    """Which dataset a class count suggests (the registry's spec of that many classes)."""
    dataset = dataset_of_class_count(num_classes)
    return f" ({dataset.title}?)" if dataset else ""


# Key patterns of each backbone's upstream state dict, most specific first (ResNet last: the
# others' keys are not ResNet-like, but ResNeSt's are a superset of ResNet's).
BACKBONE_SIGNATURES: tuple[tuple[str, str], ...] = (
    ("backbone_net.pos_embed", "ViT-L"),
    ("relative_position_bias_table", "Swin-L"),
    ("backbone_net.transition1.", "HRNetV2-W48"),
    ("backbone_net.layer1.0.conv2.fc1.", "ResNeSt-101"),
    ("backbone_net.layer3.22.", "ResNet-101"),
    ("backbone_net.layer3.5.", "ResNet-50"),
)


def backbone_of(keys: Iterable[str]) -> str | None:
    """The backbone a set of upstream state-dict keys belongs to (None when none fits)."""
    keys = list(keys)
    for pattern, name in BACKBONE_SIGNATURES:
        if any(pattern in key for key in keys):
            return name
    return None


def _adapt_to_checkpoint(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[Callable[[], None]]:
    """Let modules whose parameter shape is a free choice take the checkpoint's (e.g. the ViT
    position-embedding grid, set by the training image size) before the shapes are compared.
    Returns the undo steps, so that a checkpoint then refused leaves the model as it was."""
    undo = []
    for prefix, module in model.named_modules():
        adapt = getattr(module, "adapt_to_checkpoint", None)
        if callable(adapt):
            step = adapt(state_dict, prefix + "." if prefix else "")
            if step is not None:
                undo.append(step)
    return undo


def method_of(state: Mapping[str, torch.Tensor]) -> str | None:
    """MCIBI (memory of class features, (K, 1, C)) or MCIBI++ (per-class (mean, std), (K, 2))."""
    memory = state.get(MEMORY_KEY)
    if memory is None:
        return None
    return {3: "MCIBI", 2: "MCIBI++"}.get(memory.dim())


def _mismatch_hint(own: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor]) -> str:
    """What a checkpoint that does not fit probably is: another backbone, method or head."""
    ours, theirs = backbone_of(own), backbone_of(state_dict)
    if theirs and ours and theirs != ours:
        return f"its keys look like a {theirs} backbone but the model has {ours}: is it another model's checkpoint?"
    ours, theirs = method_of(own), method_of(state_dict)
    if theirs and ours and theirs != ours:
        return f"its memory is {theirs}'s but the model is {ours}: is it another model's checkpoint?"
    return "is it the checkpoint of another architecture (head, method or backbone)?"


def _check_fit(own: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor], origin: str, name: str,
               strict: bool) -> None:
    """One CheckpointError line naming the first missing, unexpected and mis-shaped keys."""
    missing = [k for k in own if k not in state_dict and not k.endswith(OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state_dict if k not in own]
    misshaped = [k for k in state_dict if k in own and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    parts = []
    if strict and missing:
        parts.append(f"lacks {len(missing)} of the {len(own)} weights it needs ({_listing(missing)})")
    if strict and unexpected:
        parts.append(f"has {len(unexpected)} weights it does not know ({_listing(unexpected)})")
    if misshaped:
        shown = "; ".join(f"{k} is {tuple(state_dict[k].shape)} in the checkpoint but {tuple(own[k].shape)} "
                          f"in the model" for k in misshaped[:2])
        more = "; ..." if len(misshaped) > 2 else ""
        parts.append(f"has {len(misshaped)} weights of the wrong shape ({shown}{more})")
    if parts:
        hint = _mismatch_hint(own, state_dict)
        raise CheckpointError(f"{origin} does not fit model {name}: {', '.join(parts)}; {hint}")


def _check_class_count(own: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor], name: str) -> None:
    ckpt_classes = _class_count({k: tuple(v.shape) for k, v in state_dict.items()})
    model_classes = _class_count({k: tuple(v.shape) for k, v in own.items()})
    if ckpt_classes is not None and model_classes is not None and ckpt_classes != model_classes:
        raise CheckpointError(
            f"this checkpoint has {ckpt_classes} classes{_dataset_hint(ckpt_classes)}, model {name} expects "
            f"{model_classes}{_dataset_hint(model_classes)}; is it the checkpoint of another model?"
        )


def load_checkpoint(model: nn.Module, source: str | os.PathLike | Mapping[str, Any], *, strict: bool = True,
                    ema: bool = False) -> LoadReport:
    """Load `source` (a path, a state dict, or one of upstream's containers) into `model`.

    `ema=True` loads the container's 'model_ema' weights instead of 'model'. Raises
    `CheckpointError` (one line) for unreadable/truncated files, pickles that weights_only
    refuses, an EMA-only file, a class-count mismatch, missing or unexpected keys (with
    strict=True) and shape mismatches. Returns a `LoadReport`.
    """
    if isinstance(source, (str, os.PathLike)):
        origin = str(source)
        state_dict = extract_state_dict(_read_file(Path(source)), origin, ema=ema)
    else:
        origin = "checkpoint"
        state_dict = extract_state_dict(source, origin, ema=ema)

    report = LoadReport()
    report.skipped = [k for k in state_dict if k.startswith(TRAINING_ONLY_PREFIXES)]
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(TRAINING_ONLY_PREFIXES)}
    name = _model_name(model)
    _check_class_count(model.state_dict(), state_dict, name)
    undo = _adapt_to_checkpoint(model, state_dict)
    own = model.state_dict()
    try:
        _check_fit(own, state_dict, origin, name, strict)
    except CheckpointError:
        for step in reversed(undo):
            step()
        raise

    missing = [k for k in own if k not in state_dict]
    report.missing = missing if not strict else [k for k in missing if k.endswith(OPTIONAL_SUFFIXES)]
    report.unexpected = [k for k in state_dict if k not in own] if not strict else []
    usable = {k: v for k, v in state_dict.items() if k in own}
    # Counters the checkpoint lacks keep the model's values.
    for key in missing:
        usable[key] = own[key]
    model.load_state_dict(usable, strict=True)
    return report
