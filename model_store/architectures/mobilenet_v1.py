"""MobileNet v1 (Howard et al. 2017, "MobileNets", https://arxiv.org/abs/1704.04861).

Owns the network as Keras builds it in `keras.applications.MobileNet` (keras/applications/
mobilenet.py, Keras 2.x), so that the published Keras weights load and give Keras' outputs:
every Keras layer has a module of the same name here (`conv1`, `conv1_bn`, `conv_dw_1`,
`conv_pw_1_bn`, ..., `conv_preds`), in Keras' order, and `model_store.converters.keras_h5`
maps weights by that name alone. The width multiplier alpha is a constructor argument; the
resolution multiplier rho is only the input size, since global pooling makes the network
resolution-agnostic.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

# (pointwise filters at alpha 1, depthwise stride) for conv_dw_1/conv_pw_1 .. _13 (paper,
# Table 1; Keras' block_id is the position here, from 1).
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
STEM_FILTERS = 32

# Keras' BatchNormalization defaults: epsilon 1e-3 and a moving-average momentum of 0.99,
# which is torch's momentum 0.01 (torch weights the new batch, Keras the running value).
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


def _keras_stride2_pad() -> nn.ZeroPad2d:
    # Keras pads stride-2 convolutions with ZeroPadding2D(((0, 1), (0, 1))) and convolves
    # 'valid': bottom/right only, TF's 'SAME' on even inputs. Symmetric padding would shift
    # every stride-2 output by one pixel and the Keras weights would no longer match.
    return nn.ZeroPad2d((0, 1, 0, 1))


class MobileNetV1(nn.Module):
    """MobileNet v1 with Keras' layer names and padding; `forward` returns (N, classes) logits.

    `dropout` is Keras' rate before the classifier (default 1e-3). The classifier is Keras'
    1x1 convolution `conv_preds` with a bias, applied to the pooled features, not a Linear.
    """

    def __init__(self, alpha: float = 1.0, num_classes: int = 1000, dropout: float = 1e-3):
        super().__init__()
        self.alpha = alpha
        self.num_classes = num_classes
        width = int(STEM_FILTERS * alpha)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv1_pad"] = _keras_stride2_pad()
        layers["conv1"] = nn.Conv2d(3, width, 3, stride=2, bias=False)
        layers["conv1_bn"] = _batch_norm(width)
        layers["conv1_relu"] = nn.ReLU6(inplace=True)
        for block_id, (filters, stride) in enumerate(BLOCKS, start=1):
            # Keras' 'same' for a stride-1 3x3 is symmetric padding 1.
            padding = 1
            if stride == 2:
                layers[f"conv_pad_{block_id}"] = _keras_stride2_pad()
                padding = 0
            layers[f"conv_dw_{block_id}"] = nn.Conv2d(
                width, width, 3, stride=stride, padding=padding, groups=width, bias=False
            )
            layers[f"conv_dw_{block_id}_bn"] = _batch_norm(width)
            layers[f"conv_dw_{block_id}_relu"] = nn.ReLU6(inplace=True)
            pointwise = int(filters * alpha)
            layers[f"conv_pw_{block_id}"] = nn.Conv2d(width, pointwise, 1, bias=False)
            layers[f"conv_pw_{block_id}_bn"] = _batch_norm(pointwise)
            layers[f"conv_pw_{block_id}_relu"] = nn.ReLU6(inplace=True)
            width = pointwise
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.conv_preds = nn.Conv2d(width, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.pool(self.features(x)))
        return torch.flatten(self.conv_preds(x), 1)
