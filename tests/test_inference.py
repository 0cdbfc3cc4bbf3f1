"""Inference and TTA: window grid, scale semantics, flip + LIP swap, softmax order, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tiny_models import TinyConvNet

from repro.inference.predictor import Predictor, predict, rescale_image, window_counts
from repro.inference.geometry import TTASettings, scaled_size, slide_windows
from repro.inference.reference import reference_predict


class RampModel(nn.Module):
    """logits[c, y, x] = (c+1)*x + 0.3*c*y + gain*(c - C/2)*mean(input) at 1/stride resolution.

    Position-dependent, so a missing or doubled flip shows; the input term makes flipped and
    plain passes see different data.
    """

    def __init__(self, num_classes: int, stride: int = 1, gain: float = 0.0):
        super().__init__()
        self.num_classes, self.stride, self.gain = num_classes, stride, gain
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device
        self.calls: list[int] = []  # batch size of every forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        pooled = x.mean(1, keepdim=True)
        if self.stride > 1:
            pooled = F.avg_pool2d(pooled, self.stride)
        n, _, h, w = pooled.shape
        c = torch.arange(self.num_classes, dtype=torch.float32).view(1, -1, 1, 1)
        xs = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
        ys = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
        return (c + 1) * xs + 0.3 * c * ys + self.gain * (c - self.num_classes / 2) * pooled + self.anchor


# ---------------------------------------------------------------------------------------------
# Window grid


def test_cityscapes_window_grid_matches_upstream_example():
    # upstream_test_protocol.md §9.1: 1024x2048 with crop (1024, 512), stride 341 -> 1 row x 6 cols
    windows = slide_windows(1024, 2048, (1024, 512), (341, 341))
    assert [w.x1 for w in windows] == [0, 341, 682, 1023, 1364, 1536]
    assert all((w.y1, w.y2) == (0, 1024) for w in windows)
    assert all(w.x2 - w.x1 == 512 for w in windows)


def test_window_counts_by_hand():
    counts = window_counts(1024, 2048, slide_windows(1024, 2048, (1024, 512), (341, 341)))[0]
    # windows cover [0,512) [341,853) [682,1194) [1023,1535) [1364,1876) [1536,2048)
    expected = {0: 1, 340: 1, 341: 2, 511: 2, 512: 1, 682: 2, 853: 1, 1400: 2, 1536: 2, 1875: 2, 1876: 1, 2047: 1}
    assert {x: int(counts[x]) for x in expected} == expected


def test_image_smaller_than_crop_gets_one_full_window():
    assert slide_windows(300, 400, (512, 512), (341, 341)) == [(0, 300, 0, 400)]
    # one side smaller: one row, several columns of the short side's full height
    windows = slide_windows(300, 1000, (512, 512), (341, 341))
    assert [(w.y1, w.y2) for w in windows] == [(0, 300)] * 3
    assert [(w.x1, w.x2) for w in windows] == [(0, 512), (341, 853), (488, 1000)]


def test_two_dimensional_grid_order_is_rows_then_columns():
    windows = slide_windows(700, 700, (512, 512), (341, 341))
    assert [(w.y1, w.x1) for w in windows] == [(0, 0), (0, 188), (188, 0), (188, 188)]


# ---------------------------------------------------------------------------------------------
# Multi-scale resize


def _numpy_bilinear_scale_factor(image: np.ndarray, scale: float) -> np.ndarray:
    """Bilinear resize of (C, H, W) with source coordinate (d + 0.5) / scale - 0.5.

    The coordinate is computed in float32 with the float32 inverse scale, as PyTorch's CPU kernel
    does; the blending in float64.
    """
    _, h, w = image.shape
    oh, ow = math.floor(h * scale), math.floor(w * scale)

    def axis(n_out, n_in):
        inverse = np.float32(1.0 / scale)
        src = np.maximum(inverse * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), 0)
        src = src.astype(np.float64)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        i0 = np.minimum(i0, n_in - 1)
        return i0, i1, src - np.floor(src)

    y0, y1, fy = axis(oh, h)
    x0, x1, fx = axis(ow, w)
    top = image[:, y0][:, :, x0] * (1 - fx) + image[:, y0][:, :, x1] * fx
    bottom = image[:, y1][:, :, x0] * (1 - fx) + image[:, y1][:, :, x1] * fx
    return top * (1 - fy)[None, :, None] + bottom * fy[None, :, None]


def test_scaled_size_is_floor():
    assert scaled_size(375, 500, 0.75) == (281, 375)
    assert scaled_size(1024, 2048, 1.75) == (1792, 3584)
    assert scaled_size(683, 512, 1.25) == (853, 640)
    assert scaled_size(473, 473, 0.75) == (354, 354)


@pytest.mark.parametrize("scale", [0.5, 0.75, 1.25, 1.75])
def test_rescale_uses_scale_factor_semantics(scale):
    rng = np.random.default_rng(1)
    image = rng.random((3, 375, 250)).astype(np.float32)
    out = rescale_image(torch.from_numpy(image)[None], scale)[0].numpy()
    expected = _numpy_bilinear_scale_factor(image.astype(np.float64), scale)
    assert out.shape == expected.shape == (3, *scaled_size(375, 250, scale))
    # float32 source coordinates near 300 carry ~2e-5 of rounding; `size=` is off by >1e-3
    np.testing.assert_allclose(out, expected, atol=5e-5)


def test_scale_factor_differs_from_size_when_fractional():
    image = torch.from_numpy(np.random.default_rng(2).random((1, 3, 375, 250)).astype(np.float32))
    by_factor = rescale_image(image, 0.75)
    by_size = F.interpolate(image, size=by_factor.shape[-2:], mode="bilinear", align_corners=False)
    assert (by_factor - by_size).abs().max() > 1e-3


def test_scale_one_is_identity():
    image = torch.rand(1, 3, 37, 53)
    assert torch.equal(rescale_image(image, 1.0), image)


# ---------------------------------------------------------------------------------------------
# Flip, channel swap, softmax, slide averaging


def _whole(**kw) -> TTASettings:
    return TTASettings(mode="whole", **kw)


def test_flip_averages_unflipped_pass_with_channel_swap():
    num_classes, h, w = 4, 5, 7
    model = RampModel(num_classes)
    image = torch.zeros(3, h, w)  # the model output is then pure position
    scores = predict(model, image, _whole(flip=True), num_classes, flip_pairs=[(1, 2)], device="cpu")
    x = np.arange(w)[None, :]
    y = np.arange(h)[:, None]
    plain = [(c + 1) * x + 0.3 * c * y for c in range(num_classes)]
    # flipped pass: same map (input is constant); channels 1 and 2 exchanged, then x -> w-1-x
    source_channel = {0: 0, 1: 2, 2: 1, 3: 3}
    flipped_back = [(source_channel[c] + 1) * (w - 1 - x) + 0.3 * source_channel[c] * y for c in range(num_classes)]
    expected = np.stack([(p + f) / 2 for p, f in zip(plain, flipped_back)])
    np.testing.assert_allclose(scores.numpy(), expected, rtol=0, atol=1e-5)


def test_flip_uses_the_flipped_image():
    num_classes = 3
    model = RampModel(num_classes, gain=1.0)
    image = torch.rand(3, 6, 9, generator=torch.Generator().manual_seed(3))
    scores = predict(model, image, _whole(flip=True), num_classes, device="cpu")
    mean = image.mean(0).numpy()
    c = np.arange(num_classes)[:, None, None]
    x = np.arange(9)[None, None, :]
    y = np.arange(6)[None, :, None]
    position = (c + 1) * x + 0.3 * c * y
    position_flipped_back = (c + 1) * (8 - x) + 0.3 * c * y
    content = (c - num_classes / 2) * mean[None]  # the flipped image's content, flipped back, is the original
    expected = ((position + content) + (position_flipped_back + content)) / 2
    np.testing.assert_allclose(scores.numpy(), expected, atol=1e-5)


def test_no_flip_pass_without_flip():
    model = RampModel(3)
    predict(model, torch.zeros(3, 4, 4), _whole(), 3, device="cpu")
    assert sum(model.calls) == 1


@pytest.mark.parametrize("probs", [False, True])
def test_softmax_before_resize_switch(probs):
    num_classes = 3
    model = RampModel(num_classes, stride=4, gain=2.0)
    image = torch.rand(3, 16, 20, generator=torch.Generator().manual_seed(4))
    scores = predict(model, image, _whole(probs_before_resize=probs), num_classes, device="cpu", output_size=(30, 41))
    low = model(image[None])
    low = F.softmax(low, dim=1) if probs else low
    expected = F.interpolate(low, size=(30, 41), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-6)
    # the two orders really differ (softmax after the resize would not match)
    late = F.softmax(F.interpolate(model(image[None]), size=(30, 41), mode="bilinear", align_corners=False), 1)[0]
    if probs:
        assert (scores - late).abs().max() > 1e-4


def test_slide_average_by_hand():
    # width 10, crop width 6, stride 4 -> windows [0,6) and [4,10); the model outputs the local x
    model = RampModel(2)
    settings = TTASettings(mode="slide", crop_size=(3, 6), stride=(2, 4))
    scores = predict(model, torch.zeros(3, 3, 10), settings, 2, device="cpu")[0, 0].numpy()
    expected = [0, 1, 2, 3, (4 + 0) / 2, (5 + 1) / 2, 2, 3, 4, 5]
    np.testing.assert_allclose(scores, expected, atol=1e-6)


def test_slide_softmax_applied_per_crop_before_averaging():
    model = RampModel(2)
    settings = TTASettings(mode="slide", crop_size=(3, 6), stride=(2, 4), probs_before_resize=True)
    scores = predict(model, torch.zeros(3, 3, 10), settings, 2, device="cpu")[1].numpy()
    # channel 1 minus channel 0 = local x (+0.3 y): p1 = sigmoid(local x + 0.3 y)

    def p1(local_x, y):
        return 1 / (1 + np.exp(-(local_x + 0.3 * y)))

    for yy in range(3):
        row = [p1(x, yy) for x in range(4)] + [(p1(x, yy) + p1(x - 4, yy)) / 2 for x in (4, 5)] + [p1(x - 4, yy) for x in range(6, 10)]
        np.testing.assert_allclose(scores[yy], row, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Agreement with the plain upstream-shaped loop, batching, OOM back-off


PROTOCOLS = {
    "whole-ms-flip": TTASettings(mode="whole", scales=(0.5, 0.75, 1.0, 1.25), flip=True, probs_before_resize=True),
    "slide-ms-flip": TTASettings(mode="slide", crop_size=(16, 12), stride=(10, 8), scales=(0.75, 1.0, 1.5), flip=True, probs_before_resize=True),
    "slide-logits": TTASettings(mode="slide", crop_size=(20, 20), stride=(13, 13), scales=(1.0,), flip=True),
}


@pytest.mark.parametrize("name", list(PROTOCOLS))
@pytest.mark.parametrize("max_batch, batch_pixels", [(1, "auto"), (4, "auto"), (3, None), (64, None)])
def test_predictor_matches_reference_loop(name, max_batch, batch_pixels):
    settings = PROTOCOLS[name]
    model = TinyConvNet(5)
    image = torch.randn(3, 27, 38, generator=torch.Generator().manual_seed(5))
    pairs = [(1, 3)]
    expected = reference_predict(model, image, settings, 5, pairs, "cpu", output_size=(31, 45))
    got = predict(model, image, settings, 5, pairs, "cpu", output_size=(31, 45), max_batch=max_batch,
                  batch_pixels=batch_pixels)
    assert got.shape == (5, 31, 45)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(got.argmax(0), expected.argmax(0))


def test_resize_on_cpu_matches():
    settings = PROTOCOLS["whole-ms-flip"]
    model = TinyConvNet(5)
    image = torch.randn(3, 27, 38, generator=torch.Generator().manual_seed(6))
    # resize_on_cpu also turns the CPU's default channels_last (NHWC) off, and oneDNN's NHWC and
    # NCHW convolutions round differently on some CPUs: same layout = same bits; the default
    # layout = the same prediction within float rounding.
    a = predict(model, image, settings, 5, device="cpu", output_size=(40, 50), resize_on_cpu=True)
    predictor = Predictor(model, settings, 5, (), "cpu", max_batch=4, channels_last=False)
    assert torch.equal(predictor(image, (40, 50)), a)
    b = predict(model, image, settings, 5, device="cpu", output_size=(40, 50))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert torch.equal(a.argmax(0), b.argmax(0))


class _OomAboveTwo(TinyConvNet):
    def forward(self, x):
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().forward(x)


def test_out_of_memory_halves_the_batch_says_so_once_and_keeps_results():
    settings = PROTOCOLS["slide-ms-flip"]
    image = torch.randn(3, 27, 38, generator=torch.Generator().manual_seed(7))
    said: list[str] = []
    predictor = Predictor(_OomAboveTwo(5), settings, 5, device="cpu", max_batch=8, batch_pixels=None, log=said.append)
    got = predictor(image)
    assert predictor.max_batch == 2 and predictor.oom_retries == 2
    assert said == ["out of memory with 8 inputs per forward on cpu: now at most 4 (same predictions up to "
                    "float rounding; halved again if needed)"]
    assert predictor.batching() == {"batch_pixels": None, "largest_batch": 2, "oom_halvings": 2,
                                    "max_batch_after_oom": 2}
    expected = reference_predict(TinyConvNet(5), image, settings, 5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_batches_respect_the_bound():
    model = RampModel(3)
    settings = TTASettings(mode="slide", crop_size=(8, 8), stride=(5, 5), flip=True)
    Predictor(model, settings, 3, device="cpu", max_batch=3, batch_pixels=None)(torch.zeros(3, 18, 18))
    # 3x3 windows x 2 passes = 18 crops, at most 3 per forward
    assert sum(model.calls) == 18 and max(model.calls) == 3


def test_on_the_cpu_no_forward_holds_more_pixels_than_the_largest_single_input():
    """Upstream's loop forwards one input at a time: the default batches only what fits in the
    pixels of the image's largest input (the scale-0.5 pair), so the peak stays near the loop's."""
    model = RampModel(3)
    whole = TTASettings(mode="whole", scales=(0.5, 1.0, 0.75), flip=True)
    predictor = Predictor(model, whole, 3, device="cpu", max_batch=4)
    predictor(torch.zeros(3, 20, 20))
    assert model.calls == [2, 1, 1, 1, 1]  # 10x10 pair (200 px <= 400), 20x20 alone, 15x15 pair (450 > 400)
    assert predictor.batching()["batch_pixels"] == "largest input" and predictor.largest_batch == 2
    slide = RampModel(3)
    Predictor(slide, TTASettings(mode="slide", crop_size=(8, 8), stride=(5, 5), flip=True), 3,
              device="cpu", max_batch=4)(torch.zeros(3, 18, 18))
    assert slide.calls == [1] * 18  # windows of one size: one at a time, as upstream
    fixed = RampModel(3)
    Predictor(fixed, whole, 3, device="cpu", max_batch=4, batch_pixels=900)(torch.zeros(3, 20, 20))
    assert fixed.calls == [2, 2, 2]  # a cap of 900 pixels holds two 20x20 inputs


def test_a_gpu_batch_is_cut_to_what_its_free_memory_holds(monkeypatch):
    """Where the architecture's footprint is known, a GPU forwards at most the inputs whose
    activations fit GPU_FREE_SHARE of its free memory (no GPU here: the device is only named)."""
    from repro.inference.footprint import FOOTPRINT_SIDES, GPU_FREE_SHARE, MIB, Footprint

    hundred_bytes_a_pixel = Footprint(0.0, tuple(side * side * 100 / MIB for side in FOOTPRINT_SIDES))
    assert hundred_bytes_a_pixel.activations(1000) == pytest.approx(100_000)
    predictor = Predictor(RampModel(3), _whole(flip=True), 3, device="cpu", max_batch=4,
                          footprint=hundred_bytes_a_pixel)
    assert predictor._fitting(1000) is None  # on a CPU the pixel cap rules
    predictor.device = torch.device("cuda")
    monkeypatch.setattr(predictor, "_free_device_bytes", lambda: int(250_000 / GPU_FREE_SHARE))
    assert predictor._fitting(1000) == 2  # 100 kB per input, 250 kB free for activations
    assert predictor._image_pixel_cap(1000) is None and predictor.batching()["batch_pixels"] == "free memory"


def test_pass_progress_counts_the_inputs_of_each_image():
    """The heartbeat within an image: after each forward, (inputs done, the image's inputs)."""
    settings = PROTOCOLS["slide-ms-flip"]
    calls: list[tuple[int, int]] = []
    predictor = Predictor(TinyConvNet(5), settings, 5, device="cpu", max_batch=3, batch_pixels=None,
                          pass_progress=lambda done, total: calls.append((done, total)))
    image = torch.zeros(3, 27, 38)
    predictor(image)
    total = sum(2 * len(slide_windows(*scaled_size(27, 38, s), settings.crop_size, settings.stride))
                for s in settings.scales)
    done = [d for d, _ in calls]
    assert calls[-1] == (total, total) and {t for _, t in calls} == {total}
    assert all(0 < later - earlier <= 3 for earlier, later in zip([0] + done, done))  # one call per forward
    first_image = len(calls)
    predictor(image)
    assert calls[first_image] == (3, total) and calls[-1] == (total, total)  # each image counts from 0


def test_bf16_autocast_runs_close_to_fp32():
    settings = PROTOCOLS["whole-ms-flip"]
    model = TinyConvNet(5)
    image = torch.randn(3, 27, 38, generator=torch.Generator().manual_seed(8))
    fp32 = predict(model, image, settings, 5, device="cpu")
    bf16 = predict(model, image, settings, 5, device="cpu", precision="bf16")
    assert bf16.dtype == torch.float32
    assert (fp32 - bf16).abs().max() < 0.05


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        TTASettings(mode="slide")
    with pytest.raises(ValueError):
        Predictor(RampModel(3), _whole(flip=True), 3, flip_pairs=[(1, 3)], device="cpu")
    with pytest.raises(ValueError):
        predict(RampModel(3), torch.zeros(2, 3, 4, 4), _whole(), 3, device="cpu")
    with pytest.raises(ValueError, match="expected"):
        predict(RampModel(4), torch.zeros(3, 4, 4), _whole(), 3, device="cpu")


def test_settings_from_manifest_protocol():
    from repro.manifest import load_manifest

    entry = next(e for e in load_manifest().entries if "ms+flip" in e.protocols and e.dataset == "lip")
    settings = TTASettings.from_protocol(entry.protocols["ms+flip"])
    assert settings.flip and settings.flip_pairs == ((15, 14), (17, 16), (19, 18))
    assert settings.scales == (0.75, 1.0, 1.25) and settings.mode == "slide"


# ---------------------------------------------------------------------------------------------
# CPU speed paths: NHWC layout, FLOPs counted on a meta twin, the loader's prefetch thread


def test_channels_last_is_the_cpu_default_and_keeps_predictions():
    settings = PROTOCOLS["slide-ms-flip"]
    image = torch.randn(3, 27, 38, generator=torch.Generator().manual_seed(9))
    expected = reference_predict(TinyConvNet(5), image, settings, 5, [(1, 3)], output_size=(31, 45))
    model = TinyConvNet(5)
    predictor = Predictor(model, settings, 5, [(1, 3)], "cpu")
    assert predictor.channels_last and model.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    got = predictor(image, (31, 45))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(got.argmax(0), expected.argmax(0))
    assert not Predictor(TinyConvNet(5), settings, 5, device="cpu", channels_last=False).channels_last


def test_nchw_is_restored_for_a_model_an_earlier_predictor_left_in_nhwc():
    settings = PROTOCOLS["slide-ms-flip"]
    image = torch.randn(3, 27, 38, generator=torch.Generator().manual_seed(9))
    model = TinyConvNet(5)
    Predictor(model, settings, 5, device="cpu")(image)  # the CPU default: NHWC, in place
    exact = Predictor(model, settings, 5, device="cpu", resize_on_cpu=True)  # upstream's NCHW
    assert not exact.channels_last
    assert all(p.is_contiguous() for p in model.parameters())
    fresh = Predictor(TinyConvNet(5), settings, 5, device="cpu", resize_on_cpu=True)
    assert torch.equal(exact(image), fresh(image))


def test_count_flops_equals_counting_the_real_forward_and_leaves_the_model_alone():
    from torch.utils.flop_counter import FlopCounterMode

    from repro.inference.flops import count_flops

    settings = PROTOCOLS["slide-ms-flip"]
    image = torch.randn(3, 27, 38, generator=torch.Generator().manual_seed(10))
    model = TinyConvNet(5)
    before = predict(model, image, settings, 5, device="cpu", max_batch=3)
    with FlopCounterMode(display=False) as counter:
        predict(TinyConvNet(5), image, settings, 5, device="cpu", max_batch=3)
    flops = count_flops(model, settings, 5, image.shape, (27, 38), max_batch=3)
    assert flops == counter.get_total_flops() > 0
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert torch.equal(predict(model, image, settings, 5, device="cpu", max_batch=3), before)


def test_count_flops_is_none_when_the_model_cannot_run_on_meta():
    from repro.inference.flops import count_flops

    class NeedsData(TinyConvNet):
        def forward(self, x):
            if float(x.mean()) > 1e9:  # data-dependent: impossible on "meta"
                return x
            return super().forward(x)

    assert count_flops(NeedsData(5), _whole(), 5, (3, 8, 8), (8, 8)) is None


class _Items:
    def __init__(self, n: int, bad: int | None = None):
        self.n, self.bad, self.read = n, bad, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int):
        if k == self.bad:
            raise KeyError(f"item {k}")
        self.read.append(k)
        return k


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_loader_yields_in_order_and_raises_in_place(workers):
    from repro.engine.loader import loader

    assert list(loader(_Items(7), workers)) == list(range(7))
    got = []
    with pytest.raises(KeyError, match="item 3"):
        for item in loader(_Items(6, bad=3), workers):
            got.append(item)
    assert got == [0, 1, 2]


def test_loader_reads_in_threads_of_this_process_not_forks():
    # a fork of a process that has started CUDA can hang: the loader never makes processes
    import os
    import threading

    from repro.engine.loader import loader as _loader

    class Where(_Items):
        def __getitem__(self, k: int):
            return os.getpid(), threading.current_thread().name

    seen = list(_loader(Where(8), 3))
    assert {pid for pid, _ in seen} == {os.getpid()}
    assert all(name.startswith("repro-loader") for _, name in seen)
    assert {name for _, name in _loader(Where(3), 0)} == {threading.current_thread().name}


@pytest.mark.parametrize("workers", [1, 3])
def test_loader_stops_reading_when_the_consumer_stops(workers):
    import time

    from repro.engine.loader import PREFETCH_DEPTH
    from repro.engine.loader import loader as _loader

    items = _Items(100)
    loader = _loader(items, workers)
    assert next(loader) == 0
    loader.close()
    time.sleep(0.3)
    assert len(items.read) <= 2 + max(PREFETCH_DEPTH, 2 * workers) + workers


@pytest.mark.parametrize("cpus, expected", [(1, 1), (2, 1), (3, 2), (16, 4)])
def test_loader_threads_by_machine_size(monkeypatch, cpus, expected):
    from repro.engine import loader as evaluate

    monkeypatch.setattr(evaluate.os, "cpu_count", lambda: cpus)
    assert evaluate.default_workers() == expected


def test_count_flops_runs_modules_that_draw_on_the_cpu_from_their_weights():
    from repro.inference.flops import count_flops

    class DrawsOnCpu(TinyConvNet):  # like MCIBI++'s memory: CPU draw from a parameter
        def forward(self, x):
            weight = self.body[0].weight.detach().to(device="cpu", dtype=torch.float32)
            torch.normal(weight, weight.abs() + 1.0, generator=torch.Generator().manual_seed(0))
            return super().forward(x)

    expected = count_flops(TinyConvNet(5), _whole(flip=True), 5, (3, 16, 16), (16, 16))
    assert count_flops(DrawsOnCpu(5), _whole(flip=True), 5, (3, 16, 16), (16, 16)) == expected > 0


def test_random_init_is_skipped_in_the_building_thread_only_and_nothing_is_replaced():
    """Issue 24: no process-wide patching. Inside `random_init_skipped` a network's random draws
    are left undone in this thread; torch.nn.init keeps its functions, and another thread at the
    same moment draws as usual."""
    import threading

    from repro.models import random_init_skipped

    original = torch.nn.init.kaiming_uniform_
    marker = torch.full((2, 2), 7.0)
    other: dict[str, bool] = {}
    inside, go = threading.Event(), threading.Event()

    def another_thread():
        inside.wait()
        other["drew"] = not torch.equal(torch.nn.init.normal_(torch.full((2, 2), 7.0)), torch.full((2, 2), 7.0))
        go.set()

    thread = threading.Thread(target=another_thread)
    thread.start()
    with random_init_skipped():
        assert torch.nn.init.kaiming_uniform_ is original  # nothing swapped
        assert torch.equal(torch.nn.init.normal_(marker), torch.full((2, 2), 7.0))  # not drawn here
        conv = nn.Conv2d(3, 4, 3)
        inside.set()
        go.wait(10)
    thread.join()
    assert other == {"drew": True}
    assert not torch.equal(torch.nn.init.normal_(marker.clone()), marker)  # drawn again after the block
    assert conv.weight.shape == (4, 3, 3, 3)


def test_flop_observer_counts_the_real_forward_without_changing_it():
    from torch.utils.flop_counter import FlopCounterMode

    from repro.inference.flops import FlopObserver

    settings = PROTOCOLS["slide-ms-flip"]
    image = torch.randn(3, 27, 38, generator=torch.Generator().manual_seed(11))
    predictor = Predictor(TinyConvNet(5), settings, 5, device="cpu", max_batch=3)
    plain = predictor(image)
    with FlopObserver() as observer:
        watched = predictor(image)
    with FlopCounterMode(display=False) as counter:
        predict(TinyConvNet(5), image, settings, 5, device="cpu", max_batch=3)
    assert torch.equal(watched, plain)
    assert observer.total == counter.get_total_flops() > 0
    assert FlopObserver.observable(TinyConvNet(5))
    assert not FlopObserver.observable(nn.Sequential(nn.MultiheadAttention(4, 1)))


def test_flop_observer_never_breaks_the_call_it_watches():
    from repro.inference.flops import FlopObserver

    x, weight = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with FlopObserver() as observer:
        out = F.conv2d(input=x, weight=weight)  # keywords: counted all the same
        odd = torch.matmul(torch.randn(3), torch.randn(3))  # a 0-d result: counted or flagged, never raised
    assert torch.equal(out, F.conv2d(x, weight)) and odd.dim() == 0
    assert observer.total >= 2 * out.numel() * weight[0].numel()
