"""Upstream's test transform: the resize-size rule, the 8-bit bilinear resize, bit-exact normalisation."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from repro.inference.transforms import normalize_image, resize_image, resize_output_size, test_transform

MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]


def protocol(output_size, keep_ratio=True):
    return SimpleNamespace(
        resize=SimpleNamespace(output_size=list(output_size), keep_ratio=keep_ratio),
        normalize=SimpleNamespace(mean=MEAN, std=STD),
    )


# (output_size, keep_ratio, input HxW, expected HxW): the verified examples of the protocol notes
EXAMPLES = [
    ((2048, 512), True, (375, 500), (512, 683)),
    ((2048, 512), True, (500, 375), (683, 512)),
    ((2048, 512), True, (480, 853), (512, 910)),
    ((2048, 512), True, (512, 683), (512, 683)),
    ((2048, 512), True, (480, 640), (512, 683)),
    ((520, 520), True, (375, 500), (390, 520)),
    ((2048, 1024), True, (1024, 2048), (1024, 2048)),
    ((2049, 1025), True, (1024, 2048), (1025, 2049)),
    ((2560, 640), True, (375, 500), (640, 853)),
    ((473, 473), False, (300, 180), (473, 473)),
    ((1024, 512), False, (300, 180), (1024, 512)),  # portrait stays portrait
    ((1024, 512), False, (180, 300), (512, 1024)),
    ((512, 1024), False, (180, 300), (512, 1024)),
]


@pytest.mark.parametrize("output_size,keep_ratio,size,expected", EXAMPLES)
def test_resize_size_examples(output_size, keep_ratio, size, expected):
    assert resize_output_size(*size, output_size, keep_ratio) == expected


def _reference_size(h, w, out, keep_ratio):
    """Upstream's rule in numpy float64: dsize = (int(w*sf+0.5), int(h*sf+0.5))."""
    big, small = np.float64(max(out)), np.float64(min(out))
    if keep_ratio:
        sf = np.minimum(big / np.float64(max(h, w)), small / np.float64(min(h, w)))
        return int(np.floor(h * sf + 0.5)), int(np.floor(w * sf + 0.5))
    return (int(big), int(small)) if h > w else (int(small), int(big))


def test_resize_size_matches_reference_on_random_shapes():
    rng = np.random.default_rng(0)
    outs = [(2048, 512), (520, 520), (2560, 640), (2048, 1024), (512, 2048), (473, 473)]
    for _ in range(3000):
        h, w = (int(v) for v in rng.integers(1, 3000, 2))
        out = outs[int(rng.integers(len(outs)))]
        keep = bool(rng.integers(2))
        assert resize_output_size(h, w, out, keep) == _reference_size(h, w, out, keep), (h, w, out, keep)


def test_resize_is_cv2_bilinear_on_uint8_and_identity_when_size_matches():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)
    out = resize_image(image, (2048, 512), True)  # 37x50 -> 512x692
    assert out.dtype == np.uint8 and out.shape == (512, int(50 * (512 / 37) + 0.5), 3)
    # an upsampled constant image stays constant; the 8-bit path rounds to integers
    flat = np.full((10, 20, 3), 77, np.uint8)
    assert (resize_image(flat, (40, 80), True) == 77).all()
    same = rng.integers(0, 256, (512, 683, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_image(same, (2048, 512), True), same)


def _reference_normalize(image_bgr):
    """The bit-exact numpy equivalent of upstream's cv2 sequence (protocol notes §0.3)."""
    rgb = image_bgr[:, :, ::-1].astype(np.float32)
    shifted = rgb - np.float32(np.array(MEAN))
    return np.float32(np.float64(shifted) * (1 / np.float64(np.array(STD))))


def test_normalisation_is_bit_exact():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    out = normalize_image(image, MEAN, STD)
    assert out.dtype == np.float32 and out.shape == image.shape
    reference = _reference_normalize(image)
    assert np.array_equal(out, reference)
    # and it is not the naive formula (which differs in the last bit for some pixels)
    naive = ((image[:, :, ::-1].astype(np.float64) - MEAN) / STD).astype(np.float32)
    assert not np.array_equal(out, naive)
    assert np.abs(out - naive).max() < 1e-6


def test_test_transform_is_rgb_chw_float32():
    image = np.zeros((375, 500, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 128, 250  # B, G, R
    x = test_transform(image, protocol((2048, 512)))
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and tuple(x.shape) == (3, 512, 683)
    assert x.is_contiguous()
    expected = _reference_normalize(image[:1, :1])[0, 0]  # constant image: resize keeps values
    for channel in range(3):
        assert torch.all(x[channel] == float(expected[channel]))
    assert x[0, 0, 0] > 2 and x[2, 0, 0] < -1  # channel 0 is red


def test_test_transform_matches_reference_pipeline_on_random_image():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (41, 67, 3), dtype=np.uint8)
    for out, keep in [((520, 520), True), ((473, 473), False)]:
        h, w = _reference_size(41, 67, out, keep)
        resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        expected = _reference_normalize(resized).transpose(2, 0, 1)
        assert np.array_equal(test_transform(image, protocol(out, keep)).numpy(), expected)


def test_test_transform_accepts_dicts_and_rejects_non_images():
    as_dict = {"resize": {"output_size": [520, 520], "keep_ratio": True}, "normalize": {"mean": MEAN, "std": STD}}
    assert tuple(test_transform(np.zeros((10, 20, 3), np.uint8), as_dict).shape) == (3, 260, 520)
    with pytest.raises(ValueError):
        test_transform(np.zeros((10, 20), np.uint8), as_dict)


def test_test_transform_with_a_manifest_protocol():
    from repro.manifest import load_manifest

    entry = next(e for e in load_manifest().entries if e.dataset == "ade20k" and "single" in e.protocols)
    p = entry.protocols["single"]
    assert list(p.resize.output_size) in ([2048, 512], [2560, 640])
    x = test_transform(np.zeros((375, 500, 3), np.uint8), p)
    assert tuple(x.shape) == (3, *resize_output_size(375, 500, p.resize.output_size, p.resize.keep_ratio))
