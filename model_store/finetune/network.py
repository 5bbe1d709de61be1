"""Backbone plus new head as one module, exported as one graph like any registry model.

The backbone is the registry architecture with its final classifier layer replaced by an
identity: its weights are the stored backbone's, and the layer's input (pooled as
`model_store.features` defines) is both the `features` output and the head's input. The
backbone's 1000 ImageNet classes are gone from the graph; what the registry network still
computes after that layer (SqueezeNet's ReLU and pooling, a flatten) is left unused and
dropped from the exported graph.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from model_store import registry
from model_store.features import FeatureTap, FinalLayer, LogitsAndFeatures
from model_store.finetune.head import LinearHead


class FineTunedNet(LogitsAndFeatures):
    """`backbone` without its final layer, then `head`: forward returns (logits, features)."""

    def __init__(self, backbone: nn.Module, final: FinalLayer, num_classes: int):
        super().__init__()
        parent_path, _, child = final.path.rpartition(".")
        parent = backbone.get_submodule(parent_path) if parent_path else backbone
        setattr(parent, child, nn.Identity())
        self.backbone = backbone
        self.final = final
        self.head = nn.Linear(final.dim, num_classes)
        self._tap = FeatureTap(backbone, final.path)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._tap.reset()
        self.backbone(x)  # the result past the removed layer is not needed
        features = self._tap.take()
        return self.head(features), features

    def set_head(self, head: LinearHead) -> None:
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(head.weight.astype(np.float32)))
            self.head.bias.copy_(torch.from_numpy(head.bias.astype(np.float32)))


def build_finetuned(backbone: str, features_layer: str, features_dim: int, num_classes: int
                    ) -> FineTunedNet:
    """The architecture of a user model, randomly initialised (weights are loaded after)."""
    return FineTunedNet(registry.get(backbone).build(),
                        FinalLayer(features_layer, features_dim), num_classes).eval()


def from_backbone(backbone: nn.Module, final: FinalLayer, head: LinearHead) -> FineTunedNet:
    """A stored backbone's network (weights loaded) with a fitted linear head."""
    net = FineTunedNet(backbone, final, len(head.bias)).eval()
    net.set_head(head)
    return net
