"""Shared test set-up: the model store inside the checkout, and real photos as bytes (from
`tools.photos`, the project's one photo helper)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools import photos
from tools.photos import encode  # noqa: F401  (the tests' encoder)

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("BENTOML_HOME", str(ROOT / ".bentoml"))
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


@pytest.fixture(scope="session")
def cat_jpeg() -> bytes:
    """scikit-image's chelsea: a real photo of a tabby cat."""
    return photos.jpeg("chelsea", quality=95)


@pytest.fixture(scope="session")
def coffee_jpeg() -> bytes:
    """scikit-image's coffee: a real photo of an espresso cup."""
    return photos.jpeg("coffee", quality=95)


@pytest.fixture(scope="session")
def digit_pngs() -> list[tuple[bytes, int]]:
    """A few held-out scikit-learn digits as PNG bytes with their true labels."""
    from model_store.training.lenet5 import digits_as_images

    images, labels = digits_as_images()
    return [(encode(images[i], "PNG"), int(labels[i])) for i in range(0, 50, 5)]
