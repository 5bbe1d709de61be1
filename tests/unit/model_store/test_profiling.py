"""Parameters and mult-adds counted on a small network whose figures are worked out by hand
(random weights: the counts depend on shapes only; tests/contract compares every registry
model with its published figures)."""

from __future__ import annotations

import torch
from torch import nn

from model_store.profiling import count_mult_adds, count_params


class SmallNet(nn.Module):
    """conv 3->4 (3x3) on 8x8, grouped conv 4->4 (3x3, 2 groups) on 6x6, pool, Linear(4, 3)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.grouped = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.grouped(self.conv(x))), 1))


def test_mult_adds_count_each_multiply_accumulate_of_convolutions_and_linear_layers():
    # conv: 4x6x6 outputs x 3x3x3 each; grouped: 4x6x6 outputs x 2x3x3 each; fc: 4 x 3.
    expected = 4 * 6 * 6 * 27 + 4 * 6 * 6 * 18 + 4 * 3
    assert count_mult_adds(SmallNet(), channels=3, size=8) == expected == 6492


def test_params_are_every_weight_and_bias():
    assert count_params(SmallNet()) == (3 * 4 * 9 + 4) + (2 * 4 * 9 + 4) + (4 * 3 + 3) == 203
