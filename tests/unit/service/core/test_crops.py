"""Crop schemes: exact boxes and pixels on synthetic images whose pixels encode their place."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model_store.architectures.lenet5 import LENET5_INPUT
from model_store.specs import HALF, InputSpec
from model_store.transforms import preprocess, to_model_input
from service.core.crops import (
    CROP_SCHEMES,
    check_crop_scheme,
    crop_images,
    crop_resize,
    crop_tensors,
    decode_side,
    decode_sides,
)
from service.core.errors import InvalidArgument

# Shorter side already at `resize`: crops are exact pixel copies, no resampling involved.
SPEC = InputSpec(size=100, resize=200)


def coordinate_image(width: int, height: int) -> Image.Image:
    """R = x mod 256, G = y, B = x // 256: every pixel says where it is."""
    y, x = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.stack([x % 256, y, x // 256], axis=-1).astype(np.uint8))


def region(image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    left, top, right, bottom = box
    return np.asarray(image)[top:bottom, left:right]


LANDSCAPE_FIVE = [(100, 50, 200, 150), (0, 0, 100, 100), (200, 0, 300, 100),
                  (0, 100, 100, 200), (200, 100, 300, 200)]


def test_five_crop_boxes_and_pixels():
    image = coordinate_image(300, 200)
    crops = crop_images(image, SPEC, 5)
    assert [c.box for c in crops] == LANDSCAPE_FIVE
    assert all(c.scale == 200 and not c.mirrored for c in crops)
    for crop in crops:
        pixels = np.asarray(crop.image)
        assert pixels.shape == (100, 100, 3)
        np.testing.assert_array_equal(pixels, region(image, crop.box))
        # The top-left pixel of each crop encodes the box's own corner.
        assert (int(pixels[0, 0, 0]) + 256 * int(pixels[0, 0, 2]), int(pixels[0, 0, 1])) == \
            crop.box[:2]


def test_ten_crop_is_the_five_then_their_exact_mirrors():
    image = coordinate_image(300, 200)
    crops = crop_images(image, SPEC, 10)
    assert len(crops) == 10
    assert [c.box for c in crops] == LANDSCAPE_FIVE * 2
    assert [c.mirrored for c in crops] == [False] * 5 + [True] * 5
    for plain, mirror in zip(crops[:5], crops[5:], strict=True):
        np.testing.assert_array_equal(np.asarray(mirror.image),
                                      np.asarray(plain.image)[:, ::-1])
        np.testing.assert_array_equal(np.asarray(mirror.image),
                                      region(image, mirror.box)[:, ::-1])


def test_portrait_five_crop():
    image = coordinate_image(200, 300)
    boxes = [c.box for c in crop_images(image, SPEC, 5)]
    assert boxes == [(50, 100, 150, 200), (0, 0, 100, 100), (100, 0, 200, 100),
                     (0, 200, 100, 300), (100, 200, 200, 300)]


def test_one_crop_is_exactly_preprocess():
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (300, 451, 3), dtype=np.uint8))
    spec = InputSpec(size=224, resize=256, interpolation="bicubic", mean=HALF, std=HALF)
    tensors = crop_tensors(photo, spec, 1)
    assert tensors.shape == (1, 3, 224, 224)
    np.testing.assert_array_equal(tensors[0], preprocess(photo, spec))


def test_crop_tensors_normalise_each_crop():
    image = coordinate_image(300, 200)
    tensors = crop_tensors(image, SPEC, 10)
    assert tensors.shape == (10, 3, 100, 100) and tensors.dtype == np.float32
    for tensor, crop in zip(tensors, crop_images(image, SPEC, 10), strict=True):
        np.testing.assert_array_equal(tensor, to_model_input(crop.image, SPEC))


def test_googlenet_144_crops_geometry():
    image = coordinate_image(300, 200)
    crops = crop_images(image, SPEC, 144)
    assert len(crops) == 144
    assert [c.mirrored for c in crops] == [False] * 72 + [True] * 72
    # Shorter sides 256, 288, 320, 352 scaled by resize / 256 = 200 / 256.
    assert sorted({c.scale for c in crops}) == [200, 225, 250, 275]
    assert all(sum(c.scale == s for c in crops) == 36 for s in (200, 225, 250, 275))
    assert all(c.image.size == (100, 100) for c in crops)
    for crop in crops:
        left, top, right, bottom = crop.box
        width = round(300 * crop.scale / 200)
        assert 0 <= left < right <= width and 0 <= top < bottom <= crop.scale
        assert (right - left, bottom - top) in ((100, 100), (crop.scale, crop.scale))
    at_200 = [c for c in crops[:72] if c.scale == 200]
    expected = []
    for dx in (0, 50, 100):  # left, centre, right squares of the 300x200 image
        expected += [(dx + 50, 50, dx + 150, 150), (dx, 0, dx + 100, 100),
                     (dx + 100, 0, dx + 200, 100), (dx, 100, dx + 100, 200),
                     (dx + 100, 100, dx + 200, 200), (dx, 0, dx + 200, 200)]
    assert [c.box for c in at_200] == expected
    for crop in at_200:
        source = Image.fromarray(region(image, crop.box))
        if source.size != (100, 100):  # the whole square, resized to the input size
            source = source.resize((100, 100), Image.Resampling.BILINEAR)
        np.testing.assert_array_equal(np.asarray(crop.image), np.asarray(source))
    for plain, mirror in zip(crops[:72], crops[72:], strict=True):
        assert mirror.box == plain.box and mirror.scale == plain.scale
        np.testing.assert_array_equal(np.asarray(mirror.image),
                                      np.asarray(plain.image)[:, ::-1])


def test_googlenet_portrait_squares_are_top_centre_bottom():
    crops = crop_images(coordinate_image(200, 300), SPEC, 144)
    squares = [c.box for c in crops[:36] if c.box[2] - c.box[0] == 200]
    assert squares == [(0, 0, 200, 200), (0, 50, 200, 250), (0, 100, 200, 300)]


def test_lenet_multicrop_resizes_past_its_input_size():
    assert crop_resize(LENET5_INPUT, 1) == 32
    assert crop_resize(LENET5_INPUT, 10) == 36
    assert crop_resize(LENET5_INPUT, 10, resize=40) == 40
    digit = Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 8), np.uint8))
    crops = crop_images(digit, LENET5_INPUT, 5)
    assert [c.box for c in crops] == [(2, 2, 34, 34), (0, 0, 32, 32), (4, 0, 36, 32),
                                      (0, 4, 32, 36), (4, 4, 36, 36)]
    pixels = [np.asarray(c.image).tobytes() for c in crops]
    assert len(set(pixels)) == 5
    np.testing.assert_array_equal(crop_tensors(digit, LENET5_INPUT, 1)[0],
                                  preprocess(digit, LENET5_INPUT))
    with pytest.raises(InvalidArgument, match="smaller than the input size"):
        crop_resize(LENET5_INPUT, 5, resize=30)


@pytest.mark.parametrize("value", [0, 3, 100, -10, "ten", "10.0", True, 10.5, None])
def test_bad_crop_count_names_the_valid_ones(value):
    with pytest.raises(InvalidArgument, match="crops must be one of 1, 5, 10, 144") as caught:
        check_crop_scheme(value)
    assert caught.value.details["valid_crops"] == list(CROP_SCHEMES)


@pytest.mark.parametrize(("value", "scheme"), [(1, 1), ("10", 10), (5.0, 5), ("144", 144)])
def test_crop_count_parses(value, scheme):
    assert check_crop_scheme(value) == scheme


@pytest.mark.parametrize("scheme, expected", [(1, 200), (5, 200), (10, 200), (144, 275)])
def test_decode_side_is_the_largest_shorter_side_a_scheme_resizes_to(scheme, expected):
    # 144: GoogLeNet's largest scale, 352/256 of the model's resize.
    assert decode_side(SPEC, scheme) == expected
    assert decode_side(SPEC, scheme) == max(c.scale for c in crop_images(
        coordinate_image(300, 200), SPEC, scheme))


def test_decode_side_follows_the_adapted_resize_of_specs_without_margin():
    assert decode_side(LENET5_INPUT, 1) == LENET5_INPUT.resize
    assert decode_side(LENET5_INPUT, 10) == crop_resize(LENET5_INPUT, 10)
    assert decode_sides(LENET5_INPUT) == {str(s): decode_side(LENET5_INPUT, s)
                                          for s in CROP_SCHEMES}


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e400, True, "10.5", None])
def test_crop_schemes_refuse_non_integers_with_the_valid_list(value):
    with pytest.raises(InvalidArgument, match="crops must be one of 1, 5, 10, 144"):
        check_crop_scheme(value)
