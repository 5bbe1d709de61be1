"""Keras `.h5` weight files (keras.applications MobileNet) as PyTorch state dicts.

This module owns reading Keras 2 HDF5 weight files with h5py alone (no TensorFlow) and
mapping them onto a model whose modules carry Keras' layer names, as
`model_store.architectures.mobilenet_v1.MobileNetV1` does: the module `features.conv_dw_3`
takes the Keras layer `conv_dw_3`. Which Keras weights a module takes, and how their axes
move, follows from the module's kind alone (one table below). Both layouts Keras writes are
read: `save_weights` files (layer groups at the root) and full-model `.save()` files (under
`model_weights`). A file is refused with a ValueError naming the file, the layer and both
shapes unless every tensor the model needs is found with the right shape and every weight
in the file finds a place.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from model_store.specs import ModelSpec

# One row per Keras weight: (Keras weight role, torch tensor name, axis order that takes the
# Keras array to torch's layout, or None where the layouts agree).
_Table = tuple[tuple[str, str, tuple[int, ...] | None], ...]
# Conv2D kernels are (H, W, in, out); torch's are (out, in, H, W).
_CONV: _Table = (("kernel", "weight", (3, 2, 0, 1)), ("bias", "bias", None))
# DepthwiseConv2D kernels are (H, W, channels, multiplier 1); torch's are (channels, 1, H, W).
_DEPTHWISE: _Table = (("depthwise_kernel", "weight", (2, 3, 0, 1)),)
_BATCH_NORM: _Table = (
    ("gamma", "weight", None),
    ("beta", "bias", None),
    ("moving_mean", "running_mean", None),
    ("moving_variance", "running_var", None),
)


def _table_for(name: str, module: nn.Module) -> _Table | None:
    if isinstance(module, nn.BatchNorm2d):
        return _BATCH_NORM
    if isinstance(module, nn.Conv2d):
        if module.groups == 1:
            return _CONV if module.bias is not None else _CONV[:1]
        if module.groups == module.in_channels == module.out_channels:
            return _DEPTHWISE
    if any(True for _ in module.parameters(recurse=False)):
        raise ValueError(f"no Keras counterpart is known for {name} ({type(module).__name__})")
    return None


def _names(attrs: h5py.AttributeManager, key: str) -> list[str]:
    # Keras stores names as arrays of bytes; a layer without weights has an empty list.
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in attrs.get(key, ())]


def read_layers(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """{Keras layer: {weight role ("kernel", "gamma", ...): array}} for layers with weights."""
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path}: not a readable HDF5 file ({error})") from None
    with handle:
        root = handle
        if "layer_names" not in root.attrs and "model_weights" in root:
            root = root["model_weights"]
        if "layer_names" not in root.attrs:
            raise ValueError(f"{path}: not a Keras weights file (no 'layer_names' attribute)")
        layers: dict[str, dict[str, np.ndarray]] = {}
        for layer in _names(root.attrs, "layer_names"):
            if layer not in root:
                raise ValueError(f"{path}: layer {layer!r} is listed but has no group")
            group = root[layer]
            # A weight name is "<layer scope>/<role>:<index>", e.g. "conv1_bn/gamma:0".
            weights = {
                name.rsplit("/", 1)[-1].split(":", 1)[0]: np.asarray(group[name])
                for name in _names(group.attrs, "weight_names")
            }
            if weights:
                layers[layer] = weights
        return layers


def _width_hint(found: tuple[int, ...], expected: tuple[int, ...], spec: ModelSpec) -> str:
    # Every width in a MobileNet scales with alpha, so a file for another alpha first shows
    # up as a different channel count; saying so beats leaving the user to divide shapes.
    if len(found) != len(expected) or found[0] == expected[0]:
        return ""
    return (
        f"; the file has {found[0]} channels where {spec.name} has {expected[0]} "
        f"({found[0] / expected[0]:g}x its width: weights for another width multiplier "
        f"alpha, or another architecture?)"
    )


def convert(path: Path, spec: ModelSpec) -> dict[str, torch.Tensor]:
    """The Keras file's weights as a state dict that `spec.build()` loads strictly."""
    layers = read_layers(path)
    model = spec.build()
    target = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    unused = {(layer, role) for layer, weights in layers.items() for role in weights}
    for module_name, module in model.named_modules():
        table = _table_for(module_name, module)
        if table is None:
            continue
        layer = module_name.rsplit(".", 1)[-1]
        if layer not in layers:
            raise ValueError(
                f"{path}: no weights for layer {layer!r}, which {spec.name} needs "
                f"(the file has weights for {len(layers)} layers)"
            )
        for role, tensor_name, axes in table:
            key = f"{module_name}.{tensor_name}"
            expected = tuple(target[key].shape)
            keras_shape = list(expected)
            for torch_axis, keras_axis in enumerate(axes or ()):
                keras_shape[keras_axis] = expected[torch_axis]
            found = layers[layer].get(role)
            if found is None:
                raise ValueError(
                    f"{path}: layer {layer!r} has no {role!r} weight, which {spec.name} needs "
                    f"for {key}; the layer has {sorted(layers[layer])}"
                )
            if found.shape != tuple(keras_shape):
                found_torch = tuple(found.shape[a] for a in axes) if axes else found.shape
                hint = _width_hint(tuple(found_torch), expected, spec)
                raise ValueError(
                    f"{path}: layer {layer!r} weight {role!r} has shape {tuple(found.shape)}, "
                    f"but {spec.name} expects {tuple(keras_shape)} (Keras layout, for "
                    f"{key} {expected}){hint}"
                )
            value = torch.from_numpy(found)
            if axes:
                value = value.permute(axes)
            converted[key] = value.to(target[key].dtype).contiguous()
            unused.discard((layer, role))
    if unused:
        listed = ", ".join(f"{layer}/{role}" for layer, role in sorted(unused))
        raise ValueError(f"{path}: weights that {spec.name} has no place for: {listed}")
    # What Keras does not store (BatchNorm's step counter) keeps the model's own value.
    return {key: converted.get(key, tensor) for key, tensor in target.items()}
