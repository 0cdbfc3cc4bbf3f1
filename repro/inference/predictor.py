"""Whole-image / sliding-window inference and test-time augmentation, as upstream tests.

The order of operations follows upstream's test loop (`auginference` + `test.py`) exactly:

1. for each scale `s` in protocol order, the (already test-transformed) image is resized **on the
   CPU** with `F.interpolate(scale_factor=s, mode='bilinear', align_corners=False)` (output size
   `floor(H*s) x floor(W*s)`, source coordinates scaled by `1/s`, not by in/out);
2. the scaled image runs through the model in the protocol's mode:
   * whole: one forward; logits stay at the decoder's resolution; softmax there if
     `probs_before_resize`;
   * slide: upstream's window grid (last window snapped to the bottom/right edge, a side smaller
     than the crop covered by one window of that side), each window's logits resized to the
     window size, softmaxed if `probs_before_resize`, summed into a buffer, divided by the
     per-pixel window count;
3. with flip, the same for the width-reversed scaled image; LIP's left/right channel pairs are
   swapped, then the map is reversed back;
4. each output is resized bilinearly (`size=` original size, align_corners False) on its own,
   outputs are summed in list order `[s0, s0 flipped, s1, ...]` and divided by their number.

What differs from upstream, on purpose and only up to float rounding: windows (and the flipped
pass) run through the model in batches (at most `max_batch` inputs per forward, their pixels
capped so that the memory stays near upstream's: see `Predictor`; halved automatically on
out-of-memory), the final per-output resize and running sum happen on the compute device
unless `resize_on_cpu=True` (upstream does them on the CPU), and on the CPU the network runs in
the channels_last (NHWC) layout unless `resize_on_cpu=True` or `channels_last=False`. Flips,
channel swaps and window placement are exact permutations/additions in the same order, so they
are bit-identical.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from repro.inference.footprint import GPU_FREE_SHARE, Footprint
from repro.inference.geometry import (
    TTASettings, Window, auto_pixel_cap, batch_size, largest_input_pixels, scale_inputs, slide_windows,
)
from repro.numerics import AUTOCAST, Precision  # tf32 variants run fp32 here; the engine sets TF32

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
AUTO = "auto"  # batch_pixels: chosen per device (see Predictor)
PassCallback = Callable[[int, int], None]  # (forward inputs done within this image, its inputs)
LogCallback = Callable[[str], None]


def window_counts(height: int, width: int, windows: Sequence[Window]) -> torch.Tensor:
    """How many windows cover each pixel, (height, width) int64."""
    counts = torch.zeros((height, width), dtype=torch.int64)
    for win in windows:
        counts[win.y1 : win.y2, win.x1 : win.x2] += 1
    return counts


def rescale_image(image: torch.Tensor, scale: float) -> torch.Tensor:
    """Multi-scale resize of a (N, 3, H, W) CPU batch exactly as upstream's auginference does it.

    `scale_factor=` (not `size=`) matters: PyTorch then maps output pixel d to source coordinate
    (d + 0.5) / scale - 0.5, which differs from the in/out ratio whenever H*scale is fractional.
    """
    return F.interpolate(image, scale_factor=scale, mode="bilinear", align_corners=False)


def swap_channel_pairs(scores: torch.Tensor, pairs: Sequence[Sequence[int]]) -> torch.Tensor:
    """Swap left/right class channels (dim 1) of a flipped pass, each pair from the unswapped map."""
    if not pairs:
        return scores
    source = scores.clone()
    for a, b in pairs:
        scores[:, a] = source[:, b]
        scores[:, b] = source[:, a]
    return scores


def _is_oom(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


class Predictor:
    """Runs one model under one protocol on transformed images; keeps the adaptive batch size.

    How many inputs (windows, or the plain and flipped whole image) go through the model in one
    forward: at most `max_batch`, and at most `batch_pixels` pixels together. The network's
    activations, the bulk of the peak memory, grow with those pixels. `batch_pixels`:
    * "auto" (the default): on the CPU, the pixels of the image's largest single input, so that no
      forward holds more than upstream's one-input-at-a-time loop does at its largest (small
      scales and small windows still share a forward; batching buys no speed on a CPU); on a GPU,
      no cap: `max_batch` inputs keep the GPU busy as before, and with the architecture's
      `footprint` (`repro.inference.footprint.footprint_of`) the batch is also cut to what
      `GPU_FREE_SHARE` of the free memory holds (never below one input);
    * a number of pixels; None: no cap (`max_batch` alone).
    On out-of-memory the batch is halved (down to 1) and retried; `log` says so once, and
    `batching()` gives what the result should record. `pass_progress(done, total)` is called after
    each forward with the inputs done within the current image (a heartbeat for long images).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        protocol: Any,
        num_classes: int,
        flip_pairs: Sequence[Sequence[int]] | None = None,
        device: str | torch.device | None = None,
        *,
        max_batch: int = 4,
        precision: Precision | str = Precision.FP32,
        resize_on_cpu: bool = False,
        channels_last: bool | None = None,
        batch_pixels: int | str | None = AUTO,
        footprint: Footprint | None = None,
        log: LogCallback | None = None,
        pass_progress: PassCallback | None = None,
    ):
        self.model = model
        self.settings = TTASettings.from_protocol(protocol)
        self.num_classes = int(num_classes)
        pairs = flip_pairs if flip_pairs is not None else self.settings.flip_pairs
        self.flip_pairs = tuple((int(a), int(b)) for a, b in pairs)
        for a, b in self.flip_pairs:
            if not (0 <= a < self.num_classes and 0 <= b < self.num_classes):
                raise ValueError(f"flip pair ({a}, {b}) is outside the {self.num_classes} classes")
        if device is None:
            device = next(model.parameters()).device
        self.device = torch.device(device)
        self.max_batch = max(1, int(max_batch))
        if batch_pixels is not None and batch_pixels != AUTO and int(batch_pixels) <= 0:
            raise ValueError(f"batch_pixels must be positive, 'auto' or None, not {batch_pixels!r}")
        self.batch_pixels = batch_pixels
        self.footprint = footprint
        self.log = log
        self.pass_progress = pass_progress
        self.precision = Precision(precision)  # a name that is not a precision: ValueError
        self.resize_on_cpu = resize_on_cpu
        self.oom_retries = 0  # how often the batch had to be halved (for the record)
        self.largest_batch = 0  # the most inputs one forward held (for the record)
        self._pixel_cap: int | None = None  # of the current image
        self._passes = [0, 0]  # inputs done within the current image, its inputs
        # oneDNN's convolutions run ~10% faster on NHWC tensors on the CPU (rounding differs as
        # with batching); the model's weights are converted in place. Default: on the CPU, except
        # with resize_on_cpu, the mode that follows upstream's operations exactly (NCHW).
        if channels_last is None:
            channels_last = self.default_channels_last(self.device, resize_on_cpu)
        self.channels_last = bool(channels_last)
        # both ways: a model an earlier Predictor left in NHWC must run NCHW when that is asked for
        model.to(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    @staticmethod
    def default_channels_last(device: torch.device, resize_on_cpu: bool) -> bool:
        """NHWC on the CPU (oneDNN), except in the mode that follows upstream's operations exactly."""
        return device.type == "cpu" and not resize_on_cpu

    # -- model calls ---------------------------------------------------------------------------

    def _autocast(self):
        if self.precision not in AUTOCAST:  # fp32, tf32, tf32-all: float32 tensors, no autocast
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            logits = self.model(batch)
        if isinstance(logits, Mapping):  # tolerate models returning a dict of outputs
            logits = logits["seg_logits"]
        logits = logits.float()
        if logits.dim() != 4 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"the model returned shape {tuple(logits.shape)}; expected (N, {self.num_classes}, h, w)"
            )
        return logits

    def _run_batched(self, inputs: list[torch.Tensor], consume) -> None:
        """Forward `inputs` (each (1, 3, h, w), same size) in chunks; `consume(first_index, logits)`.

        A chunk is consumed only after its forward completed, so an OOM retry never double-counts.
        """
        start = 0
        pixels = inputs[0].shape[-2] * inputs[0].shape[-1]
        per_forward = batch_size(pixels, self.max_batch, self._pixel_cap, self._fitting(pixels))
        while start < len(inputs):
            size = min(per_forward, self.max_batch, len(inputs) - start)
            try:
                logits = self._forward(torch.cat(inputs[start : start + size], dim=0))
            except RuntimeError as err:
                if not _is_oom(err) or size == 1:
                    raise
                del err
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self._halve(size)
                continue
            consume(start, logits)
            start += size
            self.largest_batch = max(self.largest_batch, size)
            self._passes[0] += size
            if self.pass_progress is not None:
                self.pass_progress(*self._passes)

    def _halve(self, size: int) -> None:
        """Out of memory with `size` inputs: at most half as many from now on (said once)."""
        self.max_batch = max(1, size // 2)
        self.oom_retries += 1
        if self.oom_retries == 1 and self.log is not None:
            self.log(f"out of memory with {size} inputs per forward on {self.device}: now at most "
                     f"{self.max_batch} (same predictions up to float rounding; halved again if needed)")

    def batching(self) -> dict[str, object]:
        """What a result should record of how the inputs were batched (`EvalResult.engine`):
        the pixel cap's rule, the most inputs one forward held, how often out-of-memory halved the
        batch and the bound it left."""
        if self.batch_pixels != AUTO:
            rule = self.batch_pixels
        elif self.device.type == "cpu":
            rule = "largest input"
        else:
            rule = "free memory" if self._sizes_by_free_memory() else None
        return {"batch_pixels": rule, "largest_batch": self.largest_batch, "oom_halvings": self.oom_retries,
                "max_batch_after_oom": self.max_batch}

    def _sizes_by_free_memory(self) -> bool:
        return self.batch_pixels == AUTO and self.device.type == "cuda" and self.footprint is not None

    def _image_pixel_cap(self, largest: int) -> int | None:
        """The most pixels one forward may hold for an image whose largest input has `largest`."""
        if self.batch_pixels == AUTO:
            return auto_pixel_cap(self.device.type, largest)
        return None if self.batch_pixels is None else int(self.batch_pixels)

    def _fitting(self, pixels: int) -> int | None:
        """Inputs of `pixels` whose activations fit the GPU's free memory (None: not sized so)."""
        if not self._sizes_by_free_memory():
            return None
        return int(GPU_FREE_SHARE * self._free_device_bytes() // max(1.0, self.footprint.activations(pixels)))

    def _free_device_bytes(self) -> int:
        """Memory a batch may still take on the GPU: free on the device plus what the allocator
        keeps cached but unused."""
        free, _ = torch.cuda.mem_get_info(self.device)
        return free + torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)

    def _whole(self, passes: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs: list[torch.Tensor | None] = [None] * len(passes)

        def consume(first: int, logits: torch.Tensor) -> None:
            if self.settings.probs_before_resize:
                logits = F.softmax(logits, dim=1)
            for j in range(logits.shape[0]):
                outputs[first + j] = logits[j : j + 1]

        self._run_batched(passes, consume)
        return outputs  # type: ignore[return-value]

    def _slide(self, passes: list[torch.Tensor]) -> list[torch.Tensor]:
        height, width = passes[0].shape[-2:]
        windows = slide_windows(height, width, self.settings.crop_size, self.settings.stride)
        tasks = [(p, win) for p in range(len(passes)) for win in windows]
        crops = [passes[p][:, :, w.y1 : w.y2, w.x1 : w.x2] for p, w in tasks]
        crop_hw = crops[0].shape[-2:]
        buffers = torch.zeros((len(passes), self.num_classes, height, width), device=self.device)

        def consume(first: int, logits: torch.Tensor) -> None:
            logits = F.interpolate(logits, size=crop_hw, mode="bilinear", align_corners=False)
            if self.settings.probs_before_resize:
                logits = F.softmax(logits, dim=1)
            for j in range(logits.shape[0]):
                p, w = tasks[first + j]
                buffers[p, :, w.y1 : w.y2, w.x1 : w.x2] += logits[j]

        self._run_batched(crops, consume)
        counts = window_counts(height, width, windows).to(device=self.device, dtype=buffers.dtype)
        buffers /= counts
        return [buffers[p : p + 1] for p in range(len(passes))]

    # -- the TTA loop --------------------------------------------------------------------------

    def scale_outputs(self, image: torch.Tensor, scale: float) -> list[torch.Tensor]:
        """The outputs of one scale at the scaled (or decoder) resolution: [plain, flipped back]."""
        scaled = rescale_image(image, scale).to(self.device)
        passes = [scaled, torch.flip(scaled, dims=[3])] if self.settings.flip else [scaled]
        run = self._slide if self.settings.mode == "slide" else self._whole
        outputs = run(passes)
        if self.settings.flip:
            flipped = swap_channel_pairs(outputs[1], self.flip_pairs)
            outputs[1] = torch.flip(flipped, dims=[3])
        return outputs

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor, output_size: Sequence[int] | None = None) -> torch.Tensor:
        """Scores (C, H, W) float32 for one transformed image (3, h, w) or (1, 3, h, w).

        `output_size` is the original (H, W) (default: the input's size). Logits are averaged when
        `probs_before_resize` is off, probabilities when it is on. The tensor lives on the compute
        device (on the CPU with `resize_on_cpu`).
        """
        return self._predict(image, output_size)

    def _predict(self, image: torch.Tensor, output_size: Sequence[int] | None) -> torch.Tensor:
        if image.dim() == 3:
            image = image.unsqueeze(0)
        if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3:
            raise ValueError(f"expected one image (3, H, W), got shape {tuple(image.shape)}")
        # the multi-scale resize is CPU-side (on "meta" when only counting FLOPs)
        image = image.to(device="meta" if self.device.type == "meta" else "cpu", dtype=torch.float32)
        out_h, out_w = (int(v) for v in (output_size or image.shape[-2:]))
        inputs = scale_inputs(int(image.shape[-2]), int(image.shape[-1]), self.settings)
        self._pixel_cap = self._image_pixel_cap(largest_input_pixels(inputs))
        self._passes = [0, sum(item.count for item in inputs)]
        total: torch.Tensor | None = None
        for scale in self.settings.scales:
            for output in self.scale_outputs(image, scale):
                if self.resize_on_cpu:
                    output = output.cpu()
                resized = F.interpolate(output, size=(out_h, out_w), mode="bilinear", align_corners=False)
                total = resized if total is None else total.add_(resized)
        assert total is not None
        return total.div_(self.settings.num_outputs)[0]


def predict(
    model: torch.nn.Module,
    image: torch.Tensor,
    protocol: Any,
    num_classes: int,
    flip_pairs: Sequence[Sequence[int]] | None = None,
    device: str | torch.device | None = None,
    *,
    output_size: Sequence[int] | None = None,
    max_batch: int = 4,
    precision: str = "fp32",
    resize_on_cpu: bool = False,
    batch_pixels: int | str | None = AUTO,
) -> torch.Tensor:
    """Scores (C, H, W) for one test-transformed image under `protocol` (see `Predictor`)."""
    predictor = Predictor(
        model,
        protocol,
        num_classes,
        flip_pairs,
        device,
        max_batch=max_batch,
        precision=precision,
        resize_on_cpu=resize_on_cpu,
        batch_pixels=batch_pixels,
    )
    return predictor(image, output_size)
