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
    resized_centre_crop,
    resized_size,
    shorter_side_size,
    to_model_input,
)
from service.core.decoding import decode_image
from tools import photos


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


def whole_then_crop(image: Image.Image, target: int, size: int) -> Image.Image:
    resized = resize_shorter_side(image, target, "bicubic")
    assert resized.size == resized_size(image, target)
    return resized.crop(centre_crop_box(*resized.size, size))


def camera_photo_scaled() -> Image.Image:
    """chelsea as a 12 MP JPEG, decoded at 1/4 in the DCT: a picture box that is not the
    whole image."""
    image = decode_image(photos.camera_jpeg("chelsea", 12.0), min_side=256)
    assert image.info.get(PICTURE_BOX) is not None
    return image


@pytest.mark.parametrize("photo", ["coffee", "portrait", "camera 12 MP at 1/4", "digit"])
def test_the_centre_crop_resamples_only_its_box_and_matches_resizing_the_whole(photo,
                                                                              monkeypatch):
    image = {"coffee": lambda: Image.fromarray(data.coffee()),
             "portrait": lambda: Image.fromarray(data.astronaut()).resize((300, 451)),
             "camera 12 MP at 1/4": camera_photo_scaled,
             "digit": lambda: Image.fromarray(data.camera()[::64, ::64])}[photo]()
    target, size = (32, 32) if photo == "digit" else (256, 224)
    expected = whole_then_crop(image, target, size)
    calls = []
    original = Image.Image.resize

    def recording(self, new_size, *args, **kwargs):
        calls.append(new_size)
        return original(self, new_size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", recording)
    cropped = resized_centre_crop(image, target, size, "bicubic")
    # a horizontal pass to the crop's width over the rows it reaches, then a vertical one:
    # nothing resized to the whole picture's width
    assert [width for width, _ in calls] == [size, size] and calls[-1] == (size, size)
    difference = np.abs(np.asarray(cropped, np.int16) - np.asarray(expected, np.int16))
    # the same filter, sample positions and pass order: at most the rounding's one level
    assert difference.max() <= 1
    assert np.mean(difference > 0) < 0.001


def test_a_portrait_crop_is_resampled_horizontally_first_as_the_whole_photo_is():
    """Given a portrait crop's box in one call, Pillow 13 runs the vertical pass first, and
    the horizontal first for the whole photo, which rounds differently on a fifth of the
    values (up to 6 levels): `resize_to` runs the passes itself, in one order for both."""
    portrait = Image.fromarray(data.coffee()).transpose(Image.Transpose.ROTATE_90)  # 400x600
    expected = np.asarray(whole_then_crop(portrait, 256, 224), np.int16)
    cropped = np.asarray(resized_centre_crop(portrait, 256, 224, "bicubic"), np.int16)
    assert np.abs(cropped - expected).max() <= 1
    assert np.mean(cropped != expected) < 0.001


def test_an_image_already_at_the_target_is_only_cropped():
    image = Image.fromarray(data.coffee()).resize((384, 256))
    assert resized_centre_crop(image, 256, 224, "bicubic").tobytes() == \
        image.crop(centre_crop_box(384, 256, 224)).tobytes()


@pytest.mark.parametrize("target", [32, 224, 299])
def test_a_crop_as_large_as_the_resized_image_stays_inside_the_picture(target):
    """The crop's far edge, scaled back to the picture, can land a rounding error past it
    (Pillow refuses such a box): it is clamped, for every size of image."""
    for width in range(1, 400, 3):
        for height in (7, 31, 97, 333):
            image = Image.new("L", (width, height))
            assert resized_centre_crop(image, target, target, "bilinear").size == \
                (target, target)
