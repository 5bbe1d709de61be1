"""The real photos the project has, at the sizes users send, as encoded files.

Every photo here ships with scikit-image (no download): the photographs among its bundled
images. Benchmarks, the decoding agreement study, the load test and the tests draw from this
one place. `camera_jpeg` makes what a phone sends from one of them: upscaled to a camera's
pixel count (bicubic, aspect kept), with a little sensor-like grain so that its JPEG is as
large as a real one (about 1.9 MB at 12 MP, quality 90, where a grain-free upscale would
compress to 0.8 MB and decode faster than any real photo).
"""

from __future__ import annotations

import io
import math
from functools import cache

import numpy as np
from PIL import Image

# scikit-image's bundled photographs (its drawings, masks and test patterns left out).
PHOTO_NAMES = ("chelsea", "coffee", "astronaut", "rocket", "camera", "coins", "clock", "moon",
               "page", "text", "brick", "grass", "gravel", "hubble_deep_field",
               "immunohistochemistry", "retina", "motorcycle")
# Grain standard deviation in 8-bit levels for camera-sized photos.
CAMERA_GRAIN = 4.0


@cache
def photo(name: str) -> Image.Image:
    """One bundled photograph as an RGB image."""
    from skimage import data

    # the motorcycle is the left view of a stereo pair
    pixels = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    return Image.fromarray(pixels).convert("RGB")


def real_photos() -> dict[str, Image.Image]:
    return {name: photo(name) for name in PHOTO_NAMES}


def at_megapixels(image: Image.Image, megapixels: float) -> Image.Image:
    """`image` resized (bicubic, aspect kept) to about `megapixels` million pixels."""
    width, height = image.size
    scale = math.sqrt(megapixels * 1e6 / (width * height))
    return image.resize((round(width * scale), round(height * scale)),
                        Image.Resampling.BICUBIC)


def with_grain(image: Image.Image, sigma: float = CAMERA_GRAIN, seed: int = 0) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0.0, sigma, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(pixels + noise), 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str = "JPEG", **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


@cache
def camera_jpeg(name: str = "chelsea", megapixels: float = 12.0, quality: int = 90,
                progressive: bool = False) -> bytes:
    """A camera-sized JPEG of a bundled photo (see the module's docstring)."""
    image = with_grain(at_megapixels(photo(name), megapixels))
    return encode(image, "JPEG", quality=quality, progressive=progressive)
