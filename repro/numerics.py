"""The arithmetic of a run: which precisions exist, where they can run, and the TF32 switches.

fp32 is what upstream's test script computes today (TF32 off since its commit f2650a08,
2023-05-29). tf32 is PyTorch's default since 1.12 (cuDNN convolutions in TF32, matmuls in
fp32) and tf32-all its default in 1.7-1.11 (both in TF32): the arithmetic most 2022 numbers
were probably computed in on an A100. All three are comparable with a documented number;
bf16 and fp16 (autocast) are not.

Light at import (the CLI reads PRECISIONS): torch loads inside the functions that need it.
"""

from __future__ import annotations

import contextlib
from enum import Enum
from typing import Any, NamedTuple

from repro.errors import ReproError

class Precision(str, Enum):
    """The arithmetic of a run, as `--precision` names it: one typed value from the command line
    (`parse_precisions`) through `EngineOptions.precision` to the engine. A str subclass, so it
    compares, hashes, formats and serialises as its name ("tf32-all")."""

    FP32 = "fp32"
    TF32 = "tf32"
    TF32_ALL = "tf32-all"
    BF16 = "bf16"
    FP16 = "fp16"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def parse(cls, name: str) -> Precision:
        """'TF32 ' -> Precision.TF32; a name that is not a precision: one line, exit 2. The one
        check of a precision's name (the command line's and a Python caller's EngineOptions)."""
        try:
            return cls(str(name).strip().lower())
        except ValueError:
            raise ReproError(f"unknown precision '{name}'; use one of {', '.join(PRECISIONS)}", exit_code=2) from None


PRECISIONS = tuple(p.value for p in Precision)
COMPARABLE = (Precision.FP32, Precision.TF32, Precision.TF32_ALL)
AUTOCAST = (Precision.BF16, Precision.FP16)  # the precisions the Predictor runs under torch.autocast
MIN_TF32_CAPABILITY = (8, 0)  # Ampere


class TF32(NamedTuple):
    """Whether float32 convolutions (cuDNN) and matmuls (cuBLAS) may run in TF32."""

    conv: bool
    matmul: bool


TF32_BY_PRECISION = {
    Precision.FP32: TF32(conv=False, matmul=False),
    Precision.TF32: TF32(conv=True, matmul=False),
    Precision.TF32_ALL: TF32(conv=True, matmul=True),
    # autocast computes in 16 bits anyway; float32 ops outside it stay exact, as upstream's test
    Precision.BF16: TF32(conv=False, matmul=False),
    Precision.FP16: TF32(conv=False, matmul=False),
}


def check_precision(precision: Precision, device: Any) -> None:
    """Refuse (exit 2) a TF32 precision where there are no TF32 tensor cores (the name itself was
    checked when it became a Precision)."""
    if not TF32_BY_PRECISION[precision].conv:
        return
    reason = tf32_unavailable(device)
    if reason:
        raise ReproError(f"--precision {precision} needs an Ampere or newer NVIDIA GPU: {reason}; "
                         "use --precision fp32", exit_code=2)


def parse_precisions(text: str) -> list[Precision]:
    """'fp32,tf32' -> [Precision.FP32, Precision.TF32] (each once, in order); an unknown name: exit 2."""
    names = [part for part in str(text).split(",") if part.strip()]
    if not names:
        raise ReproError(f"--precision needs a name; use one of {', '.join(PRECISIONS)}", exit_code=2)
    return list(dict.fromkeys(Precision.parse(name) for name in names))


def tf32_unavailable(device: Any) -> str | None:
    """Why `device` cannot compute in TF32, in words; None when it can."""
    import torch

    device = torch.device(device if device is not None else "cpu")
    if device.type != "cuda":
        return f"device '{device}' has no TF32 arithmetic"
    if not torch.cuda.is_available():
        return "no CUDA device is available"
    capability = tuple(torch.cuda.get_device_capability(device))
    if capability < MIN_TF32_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        return f"{name} has compute capability {capability[0]}.{capability[1]} (TF32 needs 8.0)"
    return None


# ---------------------------------------------------------------------------------------------
# The switches, through whichever API the installed torch has. Since torch 2.9 the
# fp32_precision properties replace allow_tf32; mixing the two raises, so one is used alone.


class _PrecisionSwitches:
    """torch >= 2.9: cudnn.conv.fp32_precision / cuda.matmul.fp32_precision ("tf32"/"ieee")."""

    def __init__(self, torch_module: Any):
        self.backends = torch_module.backends
        # oneDNN (CPU) may compute float32 in bf16/TF32 too (set_float32_matmul_precision("medium")
        # does): pinned to IEEE for every run, as "highest" did with the older API
        mkldnn = getattr(self.backends, "mkldnn", None)
        self.cpu_ops = [op for op in (getattr(mkldnn, "matmul", None), getattr(mkldnn, "conv", None))
                        if hasattr(op, "fp32_precision")]

    def _ops(self) -> list[Any]:
        return [self.backends.cudnn.conv, self.backends.cuda.matmul, *self.cpu_ops]

    def saved(self) -> tuple[str, ...]:
        return tuple(op.fp32_precision for op in self._ops())

    def restore(self, saved: tuple[str, ...]) -> None:
        for op, value in zip(self._ops(), saved, strict=True):
            op.fp32_precision = value

    def set(self, tf32: TF32) -> None:
        self.backends.cudnn.conv.fp32_precision = "tf32" if tf32.conv else "ieee"
        self.backends.cuda.matmul.fp32_precision = "tf32" if tf32.matmul else "ieee"
        for op in self.cpu_ops:
            op.fp32_precision = "ieee"

    def read(self) -> TF32:
        # "none" inherits from the level above: cudnn.conv -> cudnn (cuda, all) -> generic
        generic = self.backends.fp32_precision
        cuda_all = self.backends.cudnn.fp32_precision
        conv = _first_set(self.backends.cudnn.conv.fp32_precision, cuda_all, generic)
        matmul = _first_set(self.backends.cuda.matmul.fp32_precision, cuda_all, generic)
        return TF32(conv=conv == "tf32", matmul=matmul == "tf32")

    def cpu_reduced(self) -> list[str]:
        return [f"oneDNN {name} fp32_precision is '{op.fp32_precision}'"
                for name, op in zip(("matmul", "conv"), self.cpu_ops) if op.fp32_precision not in ("none", "ieee")]


def _first_set(*values: str) -> str:
    return next((value for value in values if value != "none"), "ieee")


class _AllowTF32Switches:
    """torch < 2.9: cudnn.allow_tf32 and the float32 matmul precision ("high" = TF32)."""

    def __init__(self, torch_module: Any):
        self.torch = torch_module

    def saved(self) -> tuple[bool, str]:
        return (self.torch.backends.cudnn.allow_tf32, self.torch.get_float32_matmul_precision())

    def restore(self, saved: tuple[bool, str]) -> None:
        self.torch.backends.cudnn.allow_tf32 = saved[0]
        self.torch.set_float32_matmul_precision(saved[1])

    def set(self, tf32: TF32) -> None:
        self.torch.backends.cudnn.allow_tf32 = tf32.conv
        # "highest" also rules out "medium" (bf16 matmuls) that a caller may have set
        self.torch.set_float32_matmul_precision("high" if tf32.matmul else "highest")

    def read(self) -> TF32:
        return TF32(conv=bool(self.torch.backends.cudnn.allow_tf32),
                    matmul=self.torch.get_float32_matmul_precision() != "highest")

    def cpu_reduced(self) -> list[str]:
        precision = self.torch.get_float32_matmul_precision()
        return [f"float32 matmul precision is '{precision}'"] if precision == "medium" else []


def switches(torch_module: Any = None) -> _PrecisionSwitches | _AllowTF32Switches:
    """The TF32 switches of the installed torch (or of `torch_module`, for tests)."""
    if torch_module is None:
        import torch as torch_module
    conv = getattr(torch_module.backends.cudnn, "conv", None)
    if _major_minor(torch_module.__version__) >= (2, 9) and hasattr(conv, "fp32_precision"):
        return _PrecisionSwitches(torch_module)
    return _AllowTF32Switches(torch_module)


def _major_minor(text: str) -> tuple[int, int]:
    major, minor = (str(text).split("+")[0].split(".") + ["0"])[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def current_tf32() -> TF32:
    """The switches as they stand (for warnings and records), read without mixing APIs."""
    return switches().read()


def reduced_float32_settings(cuda: bool) -> list[str]:
    """Global settings under which float32 is computed in reduced precision, in words."""
    active = switches()
    state, found = active.read(), active.cpu_reduced()
    if state.matmul:
        found.insert(0, "float32 matmuls may run in TF32 (cuBLAS)")
    if state.conv and cuda:
        found.insert(0, "float32 convolutions may run in TF32 (cuDNN; PyTorch's default)")
    return found


@contextlib.contextmanager
def arithmetic(precision: Precision, device: Any):
    """Set the TF32 switches `precision` asks for, for the `with` block only; restored after."""
    check_precision(precision, device)
    active = switches()
    saved = active.saved()
    active.set(TF32_BY_PRECISION[precision])
    try:
        yield
    finally:
        active.restore(saved)
