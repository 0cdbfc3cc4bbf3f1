"""FLOPs of one image's forward passes: `FlopObserver` watches the real calls (a torch-function
mode, torch's per-op formulas, no extra arithmetic) and `count_flops` counts them once on a "meta"
twin of the network (FlopCounterMode) where watching is not possible (nn.MultiheadAttention).
Neither changes a prediction."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from repro.inference.predictor import Predictor


def _meta_twin(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` whose parameters and buffers live on the "meta" device (shapes only,
    no memory, no arithmetic); the model itself is untouched."""
    memo: dict[int, Any] = {}
    for tensor in model.parameters():
        memo[id(tensor)] = torch.nn.Parameter(torch.empty_like(tensor, device="meta"), requires_grad=False)
    for tensor in model.buffers():
        memo[id(tensor)] = torch.empty_like(tensor, device="meta")
    return copy.deepcopy(model, memo)


def _meta_reads_as_zeros():
    """A dispatch mode in which copying a "meta" tensor to a real device gives zeros, so that a
    module drawing on the CPU from its weights (MCIBI++'s memory) runs on a meta twin."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class MetaReadsAsZeros(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.ops.aten._to_copy.default and args[0].device.type == "meta":
                target = torch.device(kwargs.get("device") or "meta")
                if target.type != "meta":
                    return torch.zeros(args[0].shape, dtype=kwargs.get("dtype") or args[0].dtype, device=target)
            return func(*args, **kwargs)

    return MetaReadsAsZeros()


def _matmul_flops(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> int:
    return 2 * out.numel() * a.shape[-1]


def _conv_flops(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor) -> int:
    return 2 * out.numel() * weight[0].numel()  # weight (out, in / groups, *kernel)


def _sdpa_flops(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor) -> int:
    pairs = q.shape[:-1].numel() * k.shape[-2]  # (batch, heads, queries) x keys
    return 2 * pairs * (q.shape[-1] + v.shape[-1])


# FLOPs of one call of the functions that do the multiply-adds, as torch's FlopCounterMode counts
# them (2 per multiply-add; bias, normalisation, activations and resizes not counted).
_FLOP_FORMULAS: dict[Any, Callable[..., int]] = {
    torch.conv1d: _conv_flops, torch.conv2d: _conv_flops, torch.conv3d: _conv_flops,
    F.conv1d: _conv_flops, F.conv2d: _conv_flops, F.conv3d: _conv_flops,
    torch.matmul: _matmul_flops, torch.Tensor.matmul: _matmul_flops, torch.Tensor.__matmul__: _matmul_flops,
    torch.mm: _matmul_flops, torch.bmm: _matmul_flops,
    torch.addmm: lambda c, a, b, out: _matmul_flops(a, b, out),
    torch.baddbmm: lambda c, a, b, out: _matmul_flops(a, b, out),
    F.linear: lambda x, w, out: 2 * out.numel() * w.shape[-1],
    F.scaled_dot_product_attention: _sdpa_flops,
}


class FlopObserver:
    """Counts the FLOPs of the multiply-add functions called inside `with` (a torch-function
    mode: it watches the real calls and changes nothing they compute, at no extra arithmetic).
    Not for networks with nn.MultiheadAttention, whose fast path steps aside under any mode:
    `observable(model)` says which; count those with `count_flops`."""

    def __init__(self) -> None:
        from torch.overrides import TorchFunctionMode

        observer = self
        self.total = 0
        self.complete = True  # False when a call could not be counted: then `total` is no figure

        class Watch(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                formula = _FLOP_FORMULAS.get(func)
                if formula is not None:
                    observer._add(formula, [*args, *kwargs.values()], out)
                return out

        self._mode = Watch()

    def _add(self, formula: Callable[..., int], args: list, out: Any) -> None:
        wanted = formula.__code__.co_argcount - 1
        tensors = [a for a in args if isinstance(a, torch.Tensor)][:wanted]
        try:
            self.total += formula(*tensors, out)
        except Exception:  # never disturb the prediction being watched
            self.complete = False

    @staticmethod
    def observable(model: torch.nn.Module) -> bool:
        return not any(isinstance(m, torch.nn.MultiheadAttention) for m in model.modules())

    def __enter__(self) -> FlopObserver:
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._mode.__exit__(*exc)


def count_flops(
    model: torch.nn.Module,
    protocol: Any,
    num_classes: int,
    image_shape: Sequence[int],
    output_size: Sequence[int],
    *,
    flip_pairs: Sequence[Sequence[int]] | None = None,
    max_batch: int = 4,
) -> float | None:
    """FLOPs of one image's forward passes under `protocol` (torch's FlopCounterMode), counted on
    a "meta"-device twin of `model`: no arithmetic runs, so it costs a fraction of a second and
    cannot touch the numbers of a real prediction. None when unknown."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        predictor = Predictor(_meta_twin(model), protocol, num_classes, flip_pairs, "meta", max_batch=max_batch)
        image = torch.empty(tuple(image_shape), device="meta")
        # no_grad, not inference_mode: python dispatch modes do not see inference-mode copies
        with torch.no_grad(), FlopCounterMode(display=False) as counter, _meta_reads_as_zeros():
            predictor._predict(image, output_size)
        total = float(counter.get_total_flops())
    except Exception:  # a module that cannot run on "meta" (or an old torch): no figure, no failure
        return None
    return total if total > 0 else None
