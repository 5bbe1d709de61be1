"""Shared test set-up: the model store inside the checkout, and real photos as bytes."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("BENTOML_HOME", str(ROOT / ".bentoml"))
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


def encode(array_or_image, fmt: str = "JPEG", **save_args) -> bytes:
    from PIL import Image

    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(
        array_or_image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def cat_jpeg() -> bytes:
    """scikit-image's chelsea: a real photo of a tabby cat."""
    from skimage import data

    return encode(data.chelsea(), "JPEG", quality=95)


@pytest.fixture(scope="session")
def coffee_jpeg() -> bytes:
    """scikit-image's coffee: a real photo of an espresso cup."""
    from skimage import data

    return encode(data.coffee(), "JPEG", quality=95)


@pytest.fixture(scope="session")
def digit_pngs() -> list[tuple[bytes, int]]:
    """A few held-out scikit-learn digits as PNG bytes with their true labels."""
    from model_store.training.lenet5 import digits_as_images

    images, labels = digits_as_images()
    return [(encode(images[i], "PNG"), int(labels[i])) for i in range(0, 50, 5)]
