"""MobileNetV1 against Keras' MobileNet: layer names, shapes, padding and parameter counts.

All of these run on randomly initialised models: they are about structure, not accuracy.
The padding tests compute the stride-2 convolutions independently in numpy with TensorFlow's
'SAME' rule, which on even inputs is exactly Keras' ZeroPadding2D(((0, 1), (0, 1))) followed
by a 'valid' convolution; torch's symmetric padding would shift every output by one pixel.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from model_store.architectures.mobilenet_v1 import MobileNetV1
from model_store.profiling import count_params

# TF-slim's MobileNet_v1 table (tensorflow/models research/slim/nets/mobilenet_v1.md),
# millions of parameters per width multiplier alpha.
TF_SLIM_PARAMS_M = {1.0: 4.24, 0.75: 2.59, 0.5: 1.34, 0.25: 0.47}


def keras_layers_with_weights() -> list[str]:
    """keras.applications.MobileNet's layers that carry weights, in Keras' order."""
    names = ["conv1", "conv1_bn"]
    for block_id in range(1, 14):
        names += [f"conv_dw_{block_id}", f"conv_dw_{block_id}_bn"]
        names += [f"conv_pw_{block_id}", f"conv_pw_{block_id}_bn"]
    return [*names, "conv_preds"]


def tf_same_conv2d(
    x: np.ndarray, weight: np.ndarray, stride: int, groups: int, symmetric: bool = False
) -> np.ndarray:
    """(C, H, W) input, torch-layout weight -> (O, H', W'), padded by TF's 'SAME' rule.

    'SAME' pads ceil(size / stride) outputs' worth, the odd pixel after (bottom/right).
    `symmetric` pads one pixel on every side instead, as nn.Conv2d(padding=1) would.
    """
    kernel = weight.shape[-1]
    pads = []
    for size in x.shape[1:]:
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        pads.append((1, 1) if symmetric else (total // 2, total - total // 2))
    padded = np.pad(x.astype(np.float64), ((0, 0), *pads))
    windows = sliding_window_view(padded, (kernel, kernel), axis=(1, 2))[:, ::stride, ::stride]
    in_per_group = x.shape[0] // groups
    out_per_group = weight.shape[0] // groups
    return np.concatenate(
        [
            np.einsum(
                "chwij,ocij->ohw",
                windows[g * in_per_group : (g + 1) * in_per_group],
                weight[g * out_per_group : (g + 1) * out_per_group].astype(np.float64),
            )
            for g in range(groups)
        ]
    )


@pytest.mark.parametrize(
    ("pad_name", "conv_name"), [("conv1_pad", "conv1"), ("conv_pad_2", "conv_dw_2")]
)
@pytest.mark.parametrize("size", [32, 56])
def test_stride2_padding_is_tf_same_not_symmetric_random_weights(pad_name, conv_name, size):
    torch.manual_seed(0)
    model = MobileNetV1(alpha=0.25).eval()
    pad, conv = getattr(model.features, pad_name), getattr(model.features, conv_name)
    assert conv.stride == (2, 2)
    x = torch.randn(1, conv.in_channels, size, size)
    with torch.no_grad():
        ours = conv(pad(x))[0].numpy()
    weight = conv.weight.detach().numpy()
    expected = tf_same_conv2d(x[0].numpy(), weight, 2, conv.groups)
    assert ours.shape == expected.shape == (conv.out_channels, size // 2, size // 2)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)
    # The check discriminates: symmetric padding gives a visibly different map.
    symmetric = tf_same_conv2d(x[0].numpy(), weight, 2, conv.groups, symmetric=True)
    assert np.abs(symmetric - expected).max() > 0.1


def test_stride1_depthwise_pads_symmetrically_random_weights():
    torch.manual_seed(0)
    conv = MobileNetV1(alpha=0.25).features.conv_dw_3
    x = torch.randn(1, conv.in_channels, 16, 16)
    with torch.no_grad():
        ours = conv(x)[0].numpy()
    expected = tf_same_conv2d(x[0].numpy(), conv.weight.detach().numpy(), 1, conv.groups)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("alpha", "size"), [(1.0, 224), (0.75, 192), (0.5, 160), (0.25, 128)])
def test_output_shapes_random_weights(alpha, size):
    model = MobileNetV1(alpha=alpha).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        features = model.features(x)
        logits = model(x)
    assert features.shape == (2, int(1024 * alpha), size // 32, size // 32)
    assert logits.shape == (2, 1000)


@pytest.mark.parametrize("size", [97, 300])
def test_any_input_size_and_class_count_random_weights(size):
    model = MobileNetV1(alpha=0.25, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 10)


def test_modules_carry_keras_layer_names_and_settings():
    model = MobileNetV1()
    weighted = [
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if any(True for _ in module.parameters(recurse=False))
    ]
    assert weighted == keras_layers_with_weights()
    strides = [
        int(name.rsplit("_", 1)[-1])
        for name, module in model.features.named_children()
        if name.startswith("conv_dw_") and isinstance(module, nn.Conv2d) and module.stride == (2, 2)
    ]
    assert strides == [2, 4, 6, 12]
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert (module.eps, module.momentum) == (1e-3, 0.01)  # Keras' 1e-3 and 0.99
        if isinstance(module, nn.Conv2d):
            assert (module.bias is not None) == (module is model.conv_preds)
    assert model.dropout.p == 1e-3


@pytest.mark.parametrize("alpha", sorted(TF_SLIM_PARAMS_M))
def test_params_match_tf_slim_table(alpha):
    # The table prints two decimals; learned parameters agree within that last digit (1.0
    # gives 4.232M and 0.5 gives 1.332M: the table's convention is not stated).
    params_m = count_params(MobileNetV1(alpha=alpha)) / 1e6
    assert abs(params_m - TF_SLIM_PARAMS_M[alpha]) <= 0.01


def test_alpha_1_counts_equal_keras_model_summary():
    # keras.applications.MobileNet().summary(): 4,231,976 trainable + 21,888 non-trainable
    # (BatchNorm moving mean and variance) = 4,253,864.
    model = MobileNetV1()
    moving = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("_mean", "_var")))
    assert (count_params(model), moving) == (4_231_976, 21_888)
