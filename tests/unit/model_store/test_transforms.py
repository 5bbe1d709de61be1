"""The shared preprocessing: the fused normalisation equals the textbook formula."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from model_store import registry
from model_store.transforms import centre_crop_box, preprocess, to_model_input


def reference(image: Image.Image, spec) -> np.ndarray:
    """(pixel / 255 - mean) / std, channels first, written the slow obvious way."""
    mode = "L" if spec.grayscale else "RGB"
    pixels = np.asarray(image.convert(mode), dtype=np.float64) / 255.0
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    normalised = (pixels - np.asarray(spec.mean)) / np.asarray(spec.std)
    return normalised.transpose(2, 0, 1)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet50", "inception_v3", "lenet5"])
def test_to_model_input_matches_the_formula(name):
    spec = registry.get(name).input
    image = Image.fromarray(data.chelsea()).resize((spec.size, spec.size))
    tensor = to_model_input(image, spec)
    assert tensor.dtype == np.float32
    assert tensor.flags["C_CONTIGUOUS"]
    assert tensor.shape == (spec.channels, spec.size, spec.size)
    np.testing.assert_allclose(tensor, reference(image, spec), atol=1e-5)


def test_preprocess_resizes_and_centre_crops():
    spec = registry.get("efficientnet_lite0").input
    photo = Image.fromarray(data.coffee())  # 600x400
    tensor = preprocess(photo, spec)
    scale = spec.resize / 400
    resized = photo.resize((round(600 * scale), spec.resize), Image.Resampling.BICUBIC)
    expected = reference(resized.crop(centre_crop_box(*resized.size, spec.size)), spec)
    np.testing.assert_allclose(tensor, expected, atol=1e-5)
