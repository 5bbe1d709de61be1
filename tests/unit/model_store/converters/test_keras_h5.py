"""Keras `.h5` MobileNet files: round trips, both Keras layouts, and clear refusals.

Real Keras weights need the network, so the files here are written by the tests themselves
(`tests.fixtures.keras_h5`) from randomly initialised models, BatchNorm statistics included;
the tests' names say so. They check the mapping and the refusals, not accuracy.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import h5py
import pytest
import torch

from model_store.architectures.mobilenet_v1 import MobileNetV1
from model_store.converters.keras_h5 import convert
from model_store.specs import HALF, IMAGENET_1K, InputSpec, ModelSpec
from tests.fixtures.keras_h5 import keras_layer_names, write_keras_h5


def mobilenet_spec(alpha: float, size: int = 128) -> ModelSpec:
    return ModelSpec(
        name=f"mobilenet_v1_{alpha}_{size}",
        family="mobilenet_v1",
        build=partial(MobileNetV1, alpha=alpha),
        input=InputSpec(size=size, resize=int(size / 0.875), mean=HALF, std=HALF),
        labels=IMAGENET_1K,
        weights=(),
        published=None,
        paper="x",
    )


def random_model(alpha: float, seed: int = 0) -> MobileNetV1:
    """A MobileNetV1 whose every tensor, BatchNorm statistics included, is random."""
    torch.manual_seed(seed)
    model = MobileNetV1(alpha=alpha)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("alpha", [0.25, 1.0])
def test_round_trip_gives_same_state_dict_and_outputs_random_weights(tmp_path: Path, alpha):
    model = random_model(alpha)
    path = write_keras_h5(
        model.state_dict(), tmp_path / "mobilenet.h5", layer_names=keras_layer_names(model)
    )
    converted = convert(path, mobilenet_spec(alpha))

    expected = model.state_dict()
    assert list(converted) == list(expected)
    for key, tensor in expected.items():
        assert converted[key].dtype == tensor.dtype, key
        assert torch.equal(converted[key], tensor), key
    loaded = MobileNetV1(alpha=alpha).eval()
    loaded.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_file_uses_keras_names_and_layouts_random_weights(tmp_path: Path):
    model = random_model(0.25)
    path = write_keras_h5(
        model.state_dict(), tmp_path / "mobilenet.h5", layer_names=keras_layer_names(model)
    )
    with h5py.File(path, "r") as handle:
        assert handle["conv1"].attrs["weight_names"].tolist() == [b"conv1/kernel:0"]
        assert handle["conv1/conv1/kernel:0"].shape == (3, 3, 3, 8)
        assert handle["conv_dw_2/conv_dw_2/depthwise_kernel:0"].shape == (3, 3, 16, 1)
        assert handle["conv_preds/conv_preds/kernel:0"].shape == (1, 1, 256, 1000)
        assert handle["conv_pw_13_bn"].attrs["weight_names"].tolist() == [
            b"conv_pw_13_bn/gamma:0",
            b"conv_pw_13_bn/beta:0",
            b"conv_pw_13_bn/moving_mean:0",
            b"conv_pw_13_bn/moving_variance:0",
        ]


def test_full_model_save_layout_under_model_weights_random_weights(tmp_path: Path):
    model = random_model(0.25, seed=1)
    path = write_keras_h5(
        model.state_dict(),
        tmp_path / "full.h5",
        layer_names=keras_layer_names(model),
        model_weights_group=True,
    )
    with h5py.File(path, "r") as handle:
        assert "layer_names" not in handle.attrs and "model_weights" in handle
    converted = convert(path, mobilenet_spec(0.25))
    assert all(torch.equal(converted[k], v) for k, v in model.state_dict().items())


def test_wrong_alpha_is_refused_naming_file_layer_and_shapes_random_weights(tmp_path: Path):
    path = write_keras_h5(random_model(0.75).state_dict(), tmp_path / "mobilenet_7_5_160_tf.h5")
    with pytest.raises(ValueError) as refused:
        convert(path, mobilenet_spec(1.0, 160))
    message = str(refused.value)
    assert "mobilenet_7_5_160_tf.h5" in message
    assert "layer 'conv1'" in message
    assert "(3, 3, 3, 24)" in message and "(3, 3, 3, 32)" in message
    assert "0.75x its width" in message and "alpha" in message


def test_missing_layer_is_refused_by_name_random_weights(tmp_path: Path):
    state = {
        k: v
        for k, v in random_model(0.25).state_dict().items()
        if not k.startswith("features.conv_pw_7_bn.")
    }
    path = write_keras_h5(state, tmp_path / "partial.h5")
    with pytest.raises(ValueError, match=r"partial\.h5: no weights for layer 'conv_pw_7_bn'"):
        convert(path, mobilenet_spec(0.25))


def test_missing_weight_within_a_layer_is_refused_random_weights(tmp_path: Path):
    state = dict(random_model(0.25).state_dict())
    del state["features.conv_dw_5_bn.running_var"]
    path = write_keras_h5(state, tmp_path / "no_variance.h5")
    with pytest.raises(ValueError, match="layer 'conv_dw_5_bn' has no 'moving_variance'"):
        convert(path, mobilenet_spec(0.25))


def test_headless_file_is_refused_for_a_model_with_classifier_random_weights(tmp_path: Path):
    # keras-applications also publishes *_no_top.h5 files, without conv_preds.
    state = {
        k: v for k, v in random_model(0.25).state_dict().items() if not k.startswith("conv_preds.")
    }
    path = write_keras_h5(state, tmp_path / "mobilenet_2_5_128_tf_no_top.h5")
    with pytest.raises(ValueError, match="no weights for layer 'conv_preds'"):
        convert(path, mobilenet_spec(0.25))


def test_leftover_weights_are_refused_random_weights(tmp_path: Path):
    state = dict(random_model(0.25).state_dict())
    state["features.conv_pw_14.weight"] = torch.zeros(8, 256, 1, 1)
    path = write_keras_h5(state, tmp_path / "extra.h5")
    with pytest.raises(ValueError, match=re.escape("no place for: conv_pw_14/kernel")):
        convert(path, mobilenet_spec(0.25))


def test_non_keras_files_are_refused(tmp_path: Path):
    not_hdf5 = tmp_path / "weights.h5"
    not_hdf5.write_bytes(b"not an HDF5 file")
    with pytest.raises(ValueError, match="weights.h5: not a readable HDF5 file"):
        convert(not_hdf5, mobilenet_spec(0.25))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle.create_dataset("x", data=[1.0])
    with pytest.raises(ValueError, match="other.h5: not a Keras weights file"):
        convert(other, mobilenet_spec(0.25))
