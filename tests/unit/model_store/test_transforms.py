"""The shared preprocessing: the fused normalisation equals the textbook formula."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from model_store import registry
from model_store.transforms import (
    PICTURE_BOX,
    centre_crop_box,
    picture_box,
    preprocess,
    resize_shorter_side,
    shorter_side_size,
    to_model_input,
)


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


def test_resizing_samples_the_picture_box_a_reduced_decode_recorded():
    image = Image.new("RGB", (531, 354))
    image.info[PICTURE_BOX] = (0.0, 0.0, 530.875, 353.125)  # 4247 x 2825 at 1/8
    assert picture_box(image) == (0.0, 0.0, 530.875, 353.125)
    resized = resize_shorter_side(image, 256, "bicubic")
    # the full picture's size at a shorter side of 256, as a full decode resizes to
    assert resized.size == shorter_side_size(4247, 2825, 256) == (385, 256)
    assert PICTURE_BOX not in resized.info


def test_a_box_that_no_longer_fits_its_image_is_ignored():
    image = Image.new("RGB", (531, 354))
    image.info[PICTURE_BOX] = (0.0, 0.0, 530.875, 353.125)
    cropped = image.crop((0, 0, 300, 300))  # Pillow copies `info` to the crop
    assert PICTURE_BOX in cropped.info and picture_box(cropped) is None
    assert resize_shorter_side(cropped, 256, "bicubic").size == (256, 256)
