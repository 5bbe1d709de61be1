"""Bytes to a PIL image, refusing what should not be decoded.

The pixel limit is checked from the header, before any pixel is decoded (decompression
bombs); truncated and corrupt files fail at `load()`; EXIF orientation is applied; animated
images give their first frame; palette, CMYK, 16-bit and alpha images become RGB (or L for
grayscale models) the way a viewer would show them.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.core.errors import ImageTooLarge, InvalidImage

DEFAULT_MAX_PIXELS = 40_000_000

# We enforce our own limit before decoding; PIL's warning/exception would fire later.
Image.MAX_IMAGE_PIXELS = None


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, field: str = "image"
                 ) -> Image.Image:
    if not data:
        raise InvalidImage(f"{field}: empty body, expected an encoded image (JPEG, PNG, ...)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InvalidImage(
            f"{field}: not an image file ({len(data)} bytes, starting {data[:8]!r}); "
            "send JPEG, PNG, GIF, BMP, TIFF or WebP bytes") from None
    except Exception as exc:
        raise InvalidImage(f"{field}: cannot read image header: {exc}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{field}: {width}x{height} = {width * height} pixels exceeds the limit of "
            f"{max_pixels} pixels", width=width, height=height, max_pixels=max_pixels)
    if width == 0 or height == 0:
        raise InvalidImage(f"{field}: image has no pixels ({width}x{height})")
    try:
        image.seek(0)  # animated GIF/WebP/APNG: the first frame
        image.load()
    except Exception as exc:  # truncated data, bad Huffman tables, bad CRC...
        fmt = image.format or "image"
        raise InvalidImage(f"{field}: truncated or corrupt {fmt} data: {exc}") from None
    # A malformed EXIF block should not reject a decodable image.
    with contextlib.suppress(Exception):
        image = ImageOps.exif_transpose(image)
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # PIL's own conversion clips 16-bit values at 255; scale the range instead.
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / (high - low)) if high > low else pixels * 0
        image = Image.fromarray(scaled.astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
