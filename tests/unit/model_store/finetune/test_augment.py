"""Augmented views: the backbone's input shape, repeatable from the seed, flips optional."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model_store import registry
from model_store.finetune import augment
from model_store.finetune.augment import Augmentation, ViewMaker, seeded
from model_store.transforms import preprocess, to_model_input


@pytest.fixture
def arrow() -> Image.Image:
    """An image that is not its own mirror: a bright left half, a dark right half."""
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[:, :32] = 220
    return Image.fromarray(pixels)


def test_views_have_the_backbones_input_shape_and_differ_from_the_served_input():
    from skimage import data

    spec = registry.get("efficientnet_lite0").input
    photo = Image.fromarray(data.chelsea())
    with seeded(0):
        views = ViewMaker(Augmentation(3), spec)(photo)
    assert len(views) == 3
    served = preprocess(photo, spec)
    for view in views:
        assert view.shape == served.shape and view.dtype == np.float32
        assert not np.allclose(view, served)


def test_same_seed_same_views_and_the_global_generator_is_left_alone():
    import torch

    spec = registry.get("lenet5").input
    image = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).convert("RGB")
    before = torch.random.get_rng_state()
    with seeded(7):
        first = ViewMaker(Augmentation(4), spec)(image)
    with seeded(7):
        again = ViewMaker(Augmentation(4), spec)(image)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


@pytest.mark.parametrize("flip", [True, False])
def test_flips_happen_only_when_asked(flip, arrow, monkeypatch):
    # Whole-image crops and no colour change: a view is then the image or its mirror.
    monkeypatch.setattr(augment, "CROP_AREA", (1.0, 1.0))
    monkeypatch.setattr(augment, "CROP_ASPECT", (1.0, 1.0))
    monkeypatch.setattr(augment, "COLOUR_JITTER", 0.0)
    spec = registry.get("resnet18").input
    upright = to_model_input(arrow.resize((spec.size, spec.size)), spec)
    with seeded(0):
        views = ViewMaker(Augmentation(20, flip=flip), spec)(arrow)
    left, right = upright[:, :, :8].mean(), upright[:, :, -8:].mean()
    sides = [(view[:, :, :8].mean(), view[:, :, -8:].mean()) for view in views]
    assert all(np.allclose(pair, (left, right), atol=1e-3) or
               np.allclose(pair, (right, left), atol=1e-3) for pair in sides)
    mirrored = sum(bool(np.allclose(pair, (right, left), atol=1e-3)) for pair in sides)
    assert (0 < mirrored < 20) if flip else mirrored == 0
