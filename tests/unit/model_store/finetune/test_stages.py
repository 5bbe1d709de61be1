"""Every family's stages, on random weights (the split, not accuracy, is under test): each
layer with weights belongs to one stage, stages run in order, and the cached input of the
first unfrozen stage gives the whole network's outputs back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from model_store import registry
from model_store.features import find_final_layer
from model_store.finetune.network import FineTunedNet
from model_store.finetune.stages import stages_of
from model_store.finetune.unfreeze import StageSplit, predict

# One variant of every family (the inception family's three networks differ in kind).
REPRESENTATIVES = [
    "lenet5", "alexnet", "vgg11_bn", "squeezenet1_0", "squeezenet1_1", "resnet18", "resnet50",
    "googlenet", "mobilenet_v1_0.25_128", "mobilenet_v2", "efficientnet_b0",
    "efficientnet_lite0",
    pytest.param("inception_v3", marks=pytest.mark.slow),
    pytest.param("inception_resnet_v2", marks=pytest.mark.slow),
]
# Stage counts as the module docstring defines them.
EXPECTED_COUNT = {"lenet5": 4, "alexnet": 5, "vgg11_bn": 7, "squeezenet1_0": 4,
                  "squeezenet1_1": 4, "resnet18": 5, "resnet50": 5, "googlenet": 4,
                  "mobilenet_v1_0.25_128": 5, "mobilenet_v2": 8, "efficientnet_b0": 8,
                  "efficientnet_lite0": 8, "inception_v3": 5, "inception_resnet_v2": 4}


def test_every_family_has_a_representative_here():
    names = {p if isinstance(p, str) else p.values[0] for p in REPRESENTATIVES}
    covered = {registry.get(name).family for name in names}
    assert covered == {spec.family for spec in registry.all_specs().values()}


@pytest.fixture(scope="module", params=REPRESENTATIVES)
def network(request):
    spec = registry.get(request.param)
    torch.manual_seed(0)
    model = spec.build().eval()
    final = find_final_layer(model, spec.input.channels, spec.input.size, spec.num_classes)
    net = FineTunedNet(model, final, 3).eval()
    x = torch.randn(2, spec.input.channels, spec.input.size, spec.input.size)
    with torch.no_grad():
        expected = net(x)
    return spec, net, x, expected


def _layers_run(backbone: nn.Module, x: torch.Tensor) -> list[str]:
    """Paths of the modules holding weights of their own, in the order they ran."""
    ran, hooks = [], []
    for path, module in backbone.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            hooks.append(module.register_forward_hook(
                lambda _m, _i, _o, path=path: ran.append(path)))
    try:
        with torch.no_grad():
            backbone(x)
    finally:
        for hook in hooks:
            hook.remove()
    return ran


def test_each_layer_with_weights_runs_in_one_stage_in_order(network):
    spec, net, x, _ = network
    stages = stages_of(spec, net.backbone)
    assert len(stages) == EXPECTED_COUNT[spec.name]

    def stage_of(path: str) -> int:
        owners = [i for i, stage in enumerate(stages)
                  for top in stage if path == top or path.startswith(top + ".")]
        assert len(owners) == 1, f"{path} is in stages {owners}"
        return owners[0]

    order = [stage_of(path) for path in _layers_run(net.backbone, x)]
    assert order == sorted(order) and set(order) == set(range(len(stages)))


@pytest.mark.parametrize("which", ["last", "all"])
def test_cached_stage_inputs_give_the_networks_outputs(network, which):
    spec, net, x, (logits, features) = network
    stages = stages_of(spec, net.backbone)
    split = StageSplit(net, stages, 1 if which == "last" else len(stages))
    cached = split.stage_inputs(x.numpy())
    got_logits, got_features = predict(split, cached)
    scale = float(features.abs().max())
    np.testing.assert_allclose(got_features, features.numpy(), rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(got_logits, logits.numpy(), rtol=1e-4,
                               atol=1e-5 * float(logits.abs().max()))
    with torch.no_grad():  # the frozen layers are back in place
        np.testing.assert_array_equal(net(x)[1].numpy(), features.numpy())
