"""Training images decode to the very pixels the service decodes a request to."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data

from model_store.finetune.images import UnreadableImage, load_image
from service.core.decoding import decode_image


def _photo() -> Image.Image:
    return Image.fromarray(data.chelsea()).resize((120, 80))


def _saved(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    return _saved(_photo(), "JPEG", exif=exif.tobytes(), quality=90)


def _rgba_png() -> bytes:
    rgba = _photo().convert("RGBA")
    alpha = np.zeros((80, 120), np.uint8)
    alpha[:, 60:] = 255
    rgba.putalpha(Image.fromarray(alpha))
    return _saved(rgba, "PNG")


def _sixteen_bit_png() -> bytes:
    ramp = (np.arange(80 * 120, dtype=np.uint16).reshape(80, 120) * 7 + 1000)
    return _saved(Image.fromarray(ramp), "PNG")


def _palette_with_transparency() -> bytes:
    palette = _photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return _saved(palette, "PNG", transparency=0)


def _animated_gif() -> bytes:
    frames = [_photo().convert("P"), Image.new("P", (120, 80), 3)]
    return _saved(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)


CASES = {
    "exif-rotated JPEG": _exif_rotated_jpeg,
    "RGBA PNG": _rgba_png,
    "LA PNG": lambda: _saved(_photo().convert("LA"), "PNG"),
    "16-bit grayscale PNG": _sixteen_bit_png,
    "palette PNG with transparency": _palette_with_transparency,
    "CMYK JPEG": lambda: _saved(_photo().convert("CMYK"), "JPEG", quality=90),
    "animated GIF": _animated_gif,
    "grayscale PNG": lambda: _saved(_photo().convert("L"), "PNG"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_pixels_equal_the_services_full_decoding(case, tmp_path):
    encoded = CASES[case]()
    path = tmp_path / "image"
    path.write_bytes(encoded)
    ours = load_image(path)
    theirs = decode_image(encoded)  # no min_side: decoded in full, as we decode
    assert ours.mode == theirs.mode == "RGB"
    assert ours.size == theirs.size
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_exif_rotated_jpeg())
    assert load_image(path).size == (80, 120)  # stored 120x80, shown upright


@pytest.mark.parametrize("content", [b"", b"not an image at all", _saved(_photo(), "PNG")[:300]])
def test_unreadable_files_raise_with_the_reason(content, tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(UnreadableImage) as refused:
        load_image(path)
    assert str(refused.value)
