"""A manifest row's network: built (`build_segmentor`), and built with its checkpoint loaded
(`load_segmentor`, the one function the engine, `repro explain` and `repro fetch --from` use).

Building a network draws random initial weights that a strict checkpoint load overwrites anyway
(about a second for a ResNet-50 segmentor, more for Swin-L). `random_init_skipped` leaves them
undrawn, through a torch-function mode: it is active only in the thread that builds, only for the
block, and changes nothing else (no function of torch is replaced for the process).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator

import torch
import torch.nn.init as init
from torch import nn
from torch.overrides import TorchFunctionMode

from repro.models.architectures import build_architecture, check_variant
from repro.models.checkpoint import load_checkpoint

# The calls that draw random initial weights (nn.init's functions that dispatch to a mode, and
# the in-place draws every other initialiser ends in).
_RANDOM_DRAWS = frozenset({
    torch.Tensor.uniform_, torch.Tensor.normal_, init.uniform_, init.normal_, init.kaiming_uniform_,
})


class _SkipRandomDraws(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RANDOM_DRAWS:
            return args[0] if args else kwargs["tensor"]  # left as allocated: the load fills it
        return func(*args, **kwargs)


@contextlib.contextmanager
def random_init_skipped() -> Iterator[None]:
    """Inside: networks are built without drawing random initial weights (this thread only).
    Only for a network whose every weight is then loaded strictly."""
    with _SkipRandomDraws():
        yield


def row_variant(entry, variant: str | None = None) -> str:
    """`variant` checked for manifest row `entry`; None gives the row's default variant."""
    if variant is None:
        return entry.default_variant
    return check_variant(variant, entry.id)


def build_segmentor(model_id: str, variant: str | None = None) -> nn.Module:
    """The bundled network of manifest entry `model_id` (id or alias), eval mode, CPU, float32,
    with default (untrained) weights; `load_segmentor` also loads a checkpoint.

    `variant` None takes the row's default (the forward its checkpoint was trained with).
    """
    from repro.manifest import load_manifest

    entry = load_manifest().get(model_id)
    model = build_architecture(entry.upstream_config, entry.num_classes, variant=row_variant(entry, variant))
    model.model_id = entry.id
    return model


def load_segmentor(model_id: str, checkpoint: str | os.PathLike, variant: str | None = None, *,
                   tell: Callable[[str], None] | None = None, meta: bool = False) -> nn.Module:
    """The network of `model_id` with `checkpoint` loaded strictly (upstream's names, every key
    and shape), eval mode, on the CPU. `tell` hears the phases ("building model", "loading
    checkpoint"). `meta`: built on the "meta" device, shapes only, nothing allocated: the load
    is then only the strict key and shape check (`repro fetch --from`)."""
    say = tell or (lambda phase: None)
    say("building model")
    with torch.device("meta") if meta else random_init_skipped():
        model = build_segmentor(model_id, variant)
    say("loading checkpoint")
    with warnings.catch_warnings():
        if meta:  # copying into meta tensors is a no-op, and torch says so per key
            warnings.simplefilter("ignore", UserWarning)
        load_checkpoint(model, checkpoint, strict=True)
    return model.eval()
