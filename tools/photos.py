"""The real photos the project has, at the sizes users send, as encoded files.

Every photo here ships with scikit-image (no download): the photographs among its bundled
images. Benchmarks, the decoding agreement study, the evaluation tool, the soak and attack
runs, the load test and the tests draw from this one place: `photo(name)`, `jpeg` (a bundled
photo as a JPEG file, at its own size or scaled), `framed` (resized to a camera's frame, with
grain) and `encode` (any image or pixel array as a file). `camera_jpeg` makes what a phone
sends from one of them: upscaled to a camera's pixel count (bicubic, aspect kept), with a
little sensor-like grain so that its JPEG is as large as a real one (about 1.9 MB at 12 MP,
quality 90, where a grain-free upscale would compress to 0.8 MB and decode faster than any
real photo).
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


def encode(image: Image.Image | np.ndarray, fmt: str = "JPEG", **save_args) -> bytes:
    """An image (or a uint8 pixel array) as a file in `fmt` (a PIL format name)."""
    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def at_shorter_side(image: Image.Image, side: int) -> Image.Image:
    """`image` scaled (PIL's default resampling, aspect kept) to a shorter side of `side`."""
    scale = side / min(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)))


def at_longer_side(image: Image.Image, side: int) -> Image.Image:
    """`image` scaled (bicubic, aspect kept) to a longer side of `side`: a web size."""
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


@cache
def jpeg(name: str = "chelsea", quality: int = 95, shorter_side: int | None = None) -> bytes:
    """A bundled photo as a JPEG file: at its own size, or scaled to `shorter_side`."""
    image = photo(name)
    if shorter_side is not None:
        image = at_shorter_side(image, shorter_side)
    return encode(image, "JPEG", quality=quality)


def framed(name: str, width: int, height: int, grain: float = CAMERA_GRAIN) -> Image.Image:
    """A bundled photo resized (bicubic) to exactly width x height, a camera's frame, with
    sensor-like grain of standard deviation `grain` (none when 0)."""
    image = photo(name).resize((width, height), Image.Resampling.BICUBIC)
    return with_grain(image, grain) if grain else image


@cache
def camera_jpeg(name: str = "chelsea", megapixels: float = 12.0, quality: int = 90,
                progressive: bool = False) -> bytes:
    """A camera-sized JPEG of a bundled photo (see the module's docstring)."""
    image = with_grain(at_megapixels(photo(name), megapixels))
    return encode(image, "JPEG", quality=quality, progressive=progressive)
