"""Small fake segmentors for engine tests (cheap on CPU, deterministic)."""

from __future__ import annotations

import torch
from torch import nn


class TinyConvNet(nn.Module):
    """A small real network (conv, BN, ReLU, output stride 4) with fixed random weights."""

    def __init__(self, num_classes: int = 5, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, num_classes, 3, stride=2, padding=1),
        )
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            self.body[1].running_var.fill_(1.5)
        self.eval()

    def forward(self, x):
        return self.body(x)
