"""Image decoding: what is accepted, converted, and refused with which message."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from service.core.decoding import decode_image
from service.core.errors import ImageTooLarge, InvalidImage, http_status
from tests.conftest import encode


def test_jpeg_decodes_to_rgb(cat_jpeg):
    image = decode_image(cat_jpeg)
    assert image.mode == "RGB" and image.size == (451, 300)


@pytest.mark.parametrize("data, message", [
    (b"", "empty body"),
    (b"GIF89a-but-not-really" * 3, "not an image file"),
    (b"hello, world", "not an image file"),
])
def test_bad_bytes_are_invalid_images(data, message):
    with pytest.raises(InvalidImage, match=message) as info:
        decode_image(data)
    assert http_status(info.value) == 400


def test_truncated_jpeg_is_refused(cat_jpeg):
    with pytest.raises(InvalidImage, match="truncated or corrupt JPEG"):
        decode_image(cat_jpeg[: len(cat_jpeg) // 2])


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions (a decompression bomb's header)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) \
        + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageTooLarge, match="exceeds the limit") as info:
        decode_image(_png_header_only(50_000, 50_000), max_pixels=40_000_000)
    assert http_status(info.value) == 413


@pytest.mark.parametrize("mode", ["CMYK", "P", "L", "LA", "RGBA", "I;16"])
def test_other_modes_become_rgb(mode):
    base = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), np.uint8))
    if mode == "I;16":
        image = Image.fromarray((np.arange(600).reshape(20, 30) * 100).astype(np.uint16))
        data = encode(image, "PNG")
    else:
        data = encode(base.convert(mode), "TIFF" if mode == "CMYK" else "PNG")
    decoded = decode_image(data)
    assert decoded.mode == "RGB" and decoded.size == (30, 20)
    if mode == "I;16":  # scaled over the full range, not clipped at 255
        pixels = np.asarray(decoded)[..., 0]
        assert pixels.min() == 0 and pixels.max() == 255 and len(np.unique(pixels)) > 100


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    assert decode_image(buffer.getvalue()).size == (20, 40)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    decoded = decode_image(buffer.getvalue())
    red, _, blue = decoded.getpixel((8, 8))
    assert red > 200 and blue < 50
