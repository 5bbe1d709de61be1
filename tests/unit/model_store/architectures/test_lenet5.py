"""LeNet-5's shape contract and its parameter count, recomputed by hand from the paper's sizes."""

from __future__ import annotations

import torch

from model_store.architectures.lenet5 import LENET5_INPUT, LeNet5


def test_output_shape_random_weights() -> None:
    model = LeNet5().eval()
    with torch.no_grad():
        logits = model(torch.randn(4, 1, 32, 32))
    assert logits.shape == (4, 10)


def test_input_contract_is_32x32_grayscale() -> None:
    assert (LENET5_INPUT.size, LENET5_INPUT.channels) == (32, 1)


def test_parameter_count_matches_layer_sizes() -> None:
    c1 = 6 * (5 * 5 * 1 + 1)  # 6 kernels of 5x5 over 1 map, plus a bias each
    c3 = 16 * (5 * 5 * 6 + 1)  # full connectivity to the 6 S2 maps
    c5 = 120 * (5 * 5 * 16 + 1)
    f6 = 84 * (120 + 1)
    output = 10 * (84 + 1)
    # S2 and S4 are plain average pooling: no parameters.
    expected = c1 + c3 + c5 + f6 + output
    assert expected == 61_706
    assert sum(p.numel() for p in LeNet5().parameters()) == expected
