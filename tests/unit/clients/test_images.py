"""SDK input coercion: every accepted kind of image becomes bytes the server can decode,
with the same pixels; anything else is refused before a request is made."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from clients.images import to_image_bytes


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (12, 17, 3), dtype=np.uint8)


def test_bytes_and_paths_are_sent_as_they_are(tmp_path, rgb):
    jpeg = io.BytesIO()
    Image.fromarray(rgb).save(jpeg, "JPEG")
    data = jpeg.getvalue()
    path = tmp_path / "cat.jpg"
    path.write_bytes(data)
    assert to_image_bytes(data) == data
    assert to_image_bytes(bytearray(data)) == data
    assert to_image_bytes(memoryview(data)) == data
    assert to_image_bytes(path) == data
    assert to_image_bytes(str(path)) == data


def test_arrays_and_pil_images_are_encoded_losslessly(rgb):
    np.testing.assert_array_equal(decoded(to_image_bytes(rgb)), rgb)
    np.testing.assert_array_equal(decoded(to_image_bytes(Image.fromarray(rgb))), rgb)
    # A view with strides (every other column) keeps its own pixels.
    view = rgb[:, ::2]
    np.testing.assert_array_equal(decoded(to_image_bytes(view)), view)


def test_grey_and_single_channel_arrays(rgb):
    grey = rgb[:, :, 0]
    np.testing.assert_array_equal(decoded(to_image_bytes(grey)), grey)
    np.testing.assert_array_equal(decoded(to_image_bytes(grey[:, :, None])), grey)


@pytest.mark.parametrize("image, error, message", [
    (np.zeros((4, 4, 3), np.float32), ValueError, "must be uint8"),
    (np.zeros((4, 4, 2), np.uint8), ValueError, r"HxWx3 .* got shape \(4, 4, 2\)"),
    (np.zeros((0, 4, 3), np.uint8), ValueError, "empty dimension"),
    (b"", ValueError, "empty"),
    ([[0, 1], [2, 3]], TypeError, "cannot send a list"),
    (42, TypeError, "cannot send a int"),
])
def test_what_cannot_be_an_image_is_refused(image, error, message):
    with pytest.raises(error, match=message):
        to_image_bytes(image)


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        to_image_bytes(tmp_path / "missing.jpg")
