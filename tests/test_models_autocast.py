"""The heads run under mixed precision (autocast) without dtype errors.

CUDA is not available to the test suite, so CPU autocast stands in for it: it applies the same
kind of casts (convolutions and matmuls in low precision, reductions in float32), which is what
trips heads that hard-code dtypes. A tiny stand-in backbone keeps this fast.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repro.models.mcibi import MCIBISegmentor
from repro.models.mcibiplusplus import MCIBIPlusPlusSegmentor

CHANNELS = (16, 24, 32, 48)
NUM_CLASSES = 6


class TinyBackbone(nn.Module):
    """Four outputs at strides 4, 8, 8, 8 like the OS8 ResNets (few channels)."""

    def __init__(self):
        super().__init__()
        strides = (4, 2, 1, 1)
        inputs = (3,) + CHANNELS[:-1]
        self.stages = nn.ModuleList(nn.Conv2d(i, o, 3, stride=s, padding=1) for i, o, s in zip(inputs, CHANNELS, strides))

    def forward(self, x):
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return tuple(outputs)


def variants():
    yield "mcibi", lambda: MCIBISegmentor(TinyBackbone(), CHANNELS[-1], NUM_CLASSES, output_norm_channels=CHANNELS,
                                          downsample_backbone=True, act="leaky_relu")
    yield "mcibi++ aspp+sa+downsample", lambda: MCIBIPlusPlusSegmentor(
        TinyBackbone(), CHANNELS[-1], NUM_CLASSES, context="aspp", downsample_before_sa=True, decoder_kernels={"cls": 3})
    yield "mcibi++ ppm+fpn", lambda: MCIBIPlusPlusSegmentor(
        TinyBackbone(), CHANNELS[-1], NUM_CLASSES, context="ppm", cwi_self_attention=False, fpn_channels=CHANNELS[:-1],
        force_use_preds_pr=True)
    yield "mcibi++ plain", lambda: MCIBIPlusPlusSegmentor(TinyBackbone(), CHANNELS[-1], NUM_CLASSES, context=None)


CASES = [(name, build, torch.bfloat16) for name, build in variants()]
# float16 convolutions are slow on CPU: one variant suffices (the casts involved are the same).
CASES += [(name, build, torch.float16) for name, build in variants() if name == "mcibi++ aspp+sa+downsample"]


@pytest.mark.parametrize("name, build, dtype", CASES, ids=[f"{n}-{str(d).split('.')[-1]}" for n, _, d in CASES])
def test_forward_under_autocast(name, build, dtype):
    torch.manual_seed(0)
    model = build().eval()
    images = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        reference = model(images)
        with torch.autocast("cpu", dtype=dtype):
            mixed = model(images)
    assert mixed.shape == reference.shape and reference.shape[:2] == (1, NUM_CLASSES)
    assert torch.isfinite(mixed.float()).all()
