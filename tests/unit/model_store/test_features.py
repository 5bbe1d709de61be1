"""The features output: finding the final layer, the wrapper, the parity check on both
outputs, and telling graphs stored before the output existed apart (random weights: these are
about shapes and plumbing; tests/contract runs every registry architecture)."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch import nn

from model_store.features import (
    FeatureTap,
    FinalLayer,
    NoFinalLayer,
    find_final_layer,
    with_features,
)
from model_store.outputs import FEATURES, LOGITS, OUTPUTS, features_dim, has_features
from model_store.specs import InputSpec, ModelSpec
from model_store.store import StoreError, check_parity, export_onnx


class TinyLinearNet(nn.Module):
    """conv -> global pool -> 4 features -> Linear(4, 3)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


class TinyConvHeadNet(nn.Module):
    """A 1x1 convolution classifier over a 6x6 map (SqueezeNet's shape of head)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Conv2d(3, 5, 3)
        self.classifier = nn.Sequential(nn.Conv2d(5, 3, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return torch.flatten(self.classifier(self.body(x)), 1)


def tiny_spec(build) -> ModelSpec:
    return ModelSpec(name="tiny", family="test", build=build,
                     input=InputSpec(size=8, resize=8), labels="imagenet-1k", weights=(),
                     published=None, paper="-", num_classes=3)


def test_final_layer_is_the_last_to_produce_the_classes():
    assert find_final_layer(TinyLinearNet(), 3, 8, 3) == FinalLayer("fc", 4)
    assert find_final_layer(TinyConvHeadNet(), 3, 8, 3) == FinalLayer("classifier.0", 5)
    with pytest.raises(NoFinalLayer, match="produces 7 outputs"):
        find_final_layer(TinyLinearNet(), 3, 8, 7)


def test_wrapper_returns_the_logits_unchanged_and_the_final_layers_input():
    torch.manual_seed(0)
    model = TinyLinearNet().eval()
    wrapped = with_features(model, tiny_spec(TinyLinearNet))
    assert with_features(wrapped, tiny_spec(TinyLinearNet)) is wrapped
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        logits, features = wrapped(x)
        assert torch.equal(logits, model(x))
        assert torch.allclose(features, model.pool(model.conv(x)).flatten(1))


def test_a_feature_map_is_globally_averaged():
    torch.manual_seed(0)
    model = TinyConvHeadNet().eval()
    wrapped = with_features(model, tiny_spec(TinyConvHeadNet))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        _, features = wrapped(x)
        assert features.shape == (2, 5)
        assert torch.allclose(features, model.body(x).mean(dim=(2, 3)))


def test_a_tap_refuses_a_layer_that_ran_twice():
    layer = nn.Linear(2, 2)
    model = nn.Sequential(layer, layer)
    tap = FeatureTap(model, "0")
    tap.reset()
    model(torch.zeros(1, 2))
    with pytest.raises(RuntimeError, match="ran 2 times"):
        tap.take()


def test_exported_graph_has_logits_first_then_features(tmp_path):
    import onnxruntime as ort

    spec = tiny_spec(TinyLinearNet)
    model = TinyLinearNet().eval()
    assert export_onnx(model, spec, tmp_path / "m.onnx") == FinalLayer("fc", 4)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == [LOGITS, FEATURES] == list(OUTPUTS)
    logits, features = session.run(None, {"input": np.zeros((5, 3, 8, 8), np.float32)})
    assert logits.shape == (5, 3) and features.shape == (5, 4)
    assert check_parity(model, spec, tmp_path / "m.onnx") < 1e-5


def test_parity_check_catches_features_that_differ_while_logits_agree(tmp_path):
    spec = tiny_spec(TinyLinearNet)
    torch.manual_seed(0)
    model = TinyLinearNet().eval()
    with torch.no_grad():
        model.fc.weight[:, 3] = 0.0  # feature 3 no longer reaches the logits
    export_onnx(model, spec, tmp_path / "m.onnx")
    with torch.no_grad():
        model.conv.bias[3] += 10.0  # changes feature 3 only
    with pytest.raises(StoreError, match="output features"):
        check_parity(model, spec, tmp_path / "m.onnx")


def test_has_features_reads_the_stored_record():
    new = types.SimpleNamespace(record={"outputs": ["logits", "features"], "features_dim": 1280})
    old = types.SimpleNamespace(record={"name": "resnet50", "labels": "imagenet-1k"})
    assert has_features(new) and features_dim(new) == 1280
    assert not has_features(old) and features_dim(old) is None


def test_parity_check_still_reads_a_graph_stored_before_the_features_output(tmp_path):
    """`python -m model_store verify` on an older store: logits only, checked as before."""
    spec = tiny_spec(TinyLinearNet)
    model = TinyLinearNet().eval()
    torch.onnx.export(model, (torch.zeros(1, 3, 8, 8),), str(tmp_path / "old.onnx"),
                      dynamo=False, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    assert check_parity(model, spec, tmp_path / "old.onnx") < 1e-5
    with torch.no_grad():
        model.fc.bias += 1.0
    with pytest.raises(StoreError, match="output logits"):
        check_parity(model, spec, tmp_path / "old.onnx")
