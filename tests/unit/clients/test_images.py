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


# --- the optional shrink before sending (resize_for_model) ---------------------------------

def _camera_jpeg(exif: bytes | None = None) -> bytes:
    from tools.photos import at_megapixels, photo

    buffer = io.BytesIO()
    image = at_megapixels(photo("chelsea"), 12.0)
    image.save(buffer, "JPEG", quality=90, **({"exif": exif} if exif else {}))
    return buffer.getvalue()


def test_a_camera_jpeg_is_shrunk_to_twice_the_side_the_model_uses():
    from clients.images import SHRINK_MARGIN, shrink_for_model

    original = _camera_jpeg()
    shrunk = shrink_for_model(original, 256)
    image = Image.open(io.BytesIO(shrunk))
    assert image.format == "JPEG" and min(image.size) == SHRINK_MARGIN * 256
    assert len(shrunk) < len(original) / 4
    width, height = Image.open(io.BytesIO(original)).size
    assert image.size[0] / image.size[1] == pytest.approx(width / height, rel=0.01)


def test_the_shrink_keeps_the_exif_orientation():
    from clients.images import shrink_for_model

    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter right: portrait
    shrunk = Image.open(io.BytesIO(shrink_for_model(_camera_jpeg(exif.tobytes()), 256)))
    assert shrunk.size[0] < shrunk.size[1]


def test_a_png_stays_lossless_and_small_or_unreadable_files_go_unchanged():
    from clients.images import shrink_for_model

    buffer = io.BytesIO()
    Image.new("RGB", (3000, 2000), (10, 200, 30)).save(buffer, "PNG")
    shrunk = Image.open(io.BytesIO(shrink_for_model(buffer.getvalue(), 100)))
    assert shrunk.format == "PNG" and shrunk.size == (300, 200)
    assert shrunk.getpixel((5, 5)) == (10, 200, 30)
    small = to_image_bytes(np.zeros((300, 400, 3), np.uint8))
    assert shrink_for_model(small, 256) is small
    assert shrink_for_model(b"not an image", 256) == b"not an image"


def test_decode_needs_give_the_largest_side_of_the_models_asked_for():
    from clients.results import DecodeNeeds

    needs = DecodeNeeds("a", {"a": {1: 256, 144: 352}, "b": {1: 300, 144: 412}},
                        {"a": "lite", "b": "lite"})
    assert needs.side_for(["a"]) == 256
    assert needs.side_for(["a", "b"], crops=144) == 412
    assert needs.side_for(None, family="lite") == 300
    assert needs.side_for(None) == 300  # a configured ensemble: any model's
    assert needs.side_for(["unknown"]) is None
    assert needs.side_for(None, family="unknown") is None
