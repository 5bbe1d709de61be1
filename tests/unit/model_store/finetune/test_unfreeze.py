"""Training the last stages: only they and the head change, on cached inputs; the backbone
graph exported for the run agrees with PyTorch and leaves the network in inference mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_store import registry
from model_store.features import find_final_layer
from model_store.finetune.network import FineTunedNet
from model_store.finetune.stages import stages_of
from model_store.finetune.unfreeze import StageSplit, UnfreezeSettings, train
from model_store.training.lenet5 import digits_as_images
from model_store.transforms import preprocess


@pytest.fixture
def lenet():
    spec = registry.get("lenet5")
    torch.manual_seed(0)
    model = spec.build().eval()
    net = FineTunedNet(model, find_final_layer(model, 1, 32, 10), 10).eval()
    return spec, net, stages_of(spec, model)


def digits(count: int):
    images, labels = digits_as_images()
    spec = registry.get("lenet5").input
    return np.stack([preprocess(image, spec) for image in images[:count]]), labels[:count]


def test_unfreeze_must_name_between_one_and_all_stages(lenet):
    _, net, stages = lenet
    for wrong in (0, len(stages) + 1):
        with pytest.raises(ValueError, match=f"takes 1 to {len(stages)}"):
            StageSplit(net, stages, wrong)


def test_only_the_unfrozen_stages_and_the_head_learn(lenet):
    _, net, stages = lenet
    split = StageSplit(net, stages, 2)  # C5 and F6
    assert split.trainable == ["features.6", "features.7", "classifier.0", "classifier.1",
                               "classifier.2"]
    inputs, labels = digits(256)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    losses = train(split, split.stage_inputs(inputs), labels,
                   UnfreezeSettings(stages=2, epochs=3, head_lr=1e-2, backbone_lr=1e-2),
                   seed=0, progress=False)
    assert losses[-1] < losses[0]
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"backbone.features.6.weight", "backbone.features.6.bias",
                       "backbone.classifier.1.weight", "backbone.classifier.1.bias",
                       "head.weight", "head.bias"}
    assert not any(p.requires_grad for p in net.parameters())
    assert not any(m.training for m in net.modules())


def test_the_network_is_restored_when_training_fails(lenet):
    _, net, stages = lenet
    split = StageSplit(net, stages, 1)
    modules_before = dict(net.named_modules())
    with pytest.raises(RuntimeError), split.from_cache():
        raise RuntimeError("interrupted")
    assert dict(net.named_modules()).keys() == modules_before.keys()
    assert all(net.get_submodule(path) is module for path, module in modules_before.items())


def test_exported_backbone_gives_features_and_stage_inputs(lenet, tmp_path):
    _, net, stages = lenet
    split = StageSplit(net, stages, 1)
    graph = split.export_frozen(1, 32, tmp_path / "backbone.onnx")
    assert not any(m.training for m in net.modules())  # the exporter left inference mode
    inputs, _ = digits(5)
    features, stage_inputs = graph(inputs)
    with torch.no_grad():
        _, expected_features = net(torch.from_numpy(inputs))
    np.testing.assert_allclose(features, expected_features.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stage_inputs, split.stage_inputs(inputs), rtol=1e-5, atol=1e-5)
    assert stage_inputs.shape == (5, 120, 1, 1)  # C5 and its ReLU: what F6's stage takes
