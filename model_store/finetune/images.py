"""Image files to RGB images, by the service's decoding rules.

A model fine-tuned on images decoded one way and served images decoded another would be
measured on inputs it never sees. So training images are decoded as the service decodes a
request (`service.core.decoding`): the first frame of an animation, EXIF orientation applied,
and palette, CMYK, 16-bit and alpha images made RGB the way a viewer shows them (alpha over
white, 16-bit ranges scaled, not clipped). The service's own functions sit above this layer
and cannot be imported here; tests/unit/model_store/finetune/test_images.py decodes the same
files through both and requires identical pixels, so the two cannot drift apart.

Files are decoded at full size: the service's JPEG DCT scaling is a speed-up whose answers
agree with full decoding (docs/accuracy.md), and training has no latency budget.
"""

from __future__ import annotations

import functools
from pathlib import Path

from PIL import Image, ImageOps

from model_store.transforms import to_rgb

# Files are the user's own: no pixel limit beyond the memory they cost (the service guards
# requests with its own limits).
Image.MAX_IMAGE_PIXELS = None


class UnreadableImage(ValueError):
    """A file that is not an image Pillow can decode; `str()` says why."""


@functools.cache
def _register_heif() -> None:
    """HEIC/HEIF (what iPhones write) through pillow-heif, where installed, as the service."""
    try:
        import pillow_heif
    except ImportError:
        return
    pillow_heif.register_heif_opener(thumbnails=False)


def load_image(path: Path) -> Image.Image:
    """The file's first frame, upright, as RGB; UnreadableImage if it cannot be decoded."""
    _register_heif()
    try:
        with Image.open(path) as opened:
            opened.seek(0)
            opened.load()
            image = ImageOps.exif_transpose(opened)
            return to_rgb(image)
    except Exception as exc:  # not an image, truncated, corrupt: the file is skipped
        raise UnreadableImage(f"{type(exc).__name__}: {exc}") from None

