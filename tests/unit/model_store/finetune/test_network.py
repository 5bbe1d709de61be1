"""Backbone plus head as one module (random weights: the wiring is under test)."""

from __future__ import annotations

import pytest
import torch

from model_store import registry
from model_store.features import find_final_layer, with_features
from model_store.finetune.head import LinearHead
from model_store.finetune.network import FineTunedNet, build_finetuned, from_backbone


@pytest.mark.parametrize("name", ["lenet5", "squeezenet1_1", "resnet18"])
def test_features_are_the_backbones_and_logits_come_from_the_head(name):
    spec = registry.get(name)
    torch.manual_seed(0)
    original = spec.build().eval()
    x = torch.randn(2, spec.input.channels, spec.input.size, spec.input.size)
    with torch.no_grad():
        _, backbone_features = with_features(original, spec)(x)
    final = find_final_layer(original, spec.input.channels, spec.input.size, spec.num_classes)
    net = FineTunedNet(original, final, 4).eval()
    with torch.no_grad():
        logits, features = net(x)
        assert torch.equal(features, backbone_features)
        assert torch.allclose(logits, net.head(features))
    assert logits.shape == (2, 4)
    # The ImageNet (or digit) classifier is gone from the weights.
    assert not any(key.startswith(f"backbone.{final.path}.") for key in net.state_dict())


def test_a_rebuilt_user_model_loads_the_saved_weights_strictly():
    import numpy as np

    spec = registry.get("lenet5")
    original = spec.build().eval()
    final = find_final_layer(original, 1, 32, 10)
    head = LinearHead(np.arange(84 * 3, dtype=np.float64).reshape(3, 84) / 1e3,
                      np.array([0.5, -1.0, 2.0]))
    net = from_backbone(original, final, head)
    rebuilt = build_finetuned("lenet5", final.path, final.dim, 3)
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x)[0], net(x)[0])
        assert torch.allclose(net.head.weight, torch.from_numpy(head.weight).float())
