"""Turns what a caller has into the encoded image bytes the server decodes.

Accepted: a path (str or os.PathLike) to an image file, the file's bytes, a PIL image, or a
numpy uint8 array HxWx3 (RGB), HxW (grey) or HxWx4 (RGBA). Files and bytes go as they are;
arrays and PIL images are encoded losslessly as PNG, so the server sees the same pixels.

`shrink_for_model` is the optional client-side shrink (`resize_for_model=True`): a camera
photo is sent with its shorter side at `SHRINK_MARGIN` times what the model resizes it to,
which saves upload and server CPU and leaves the server a proper downscale of its own.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, "Image.Image",
                   "np.ndarray"]


# The shorter side sent is this many times the one the model resizes to: the server then
# still downscales by at least 2, as it would from the original photo.
SHRINK_MARGIN = 2
SHRINK_JPEG_QUALITY = 95


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def to_image_bytes(image: ImageInput) -> bytes:
    """Encoded image bytes for `image`; TypeError/ValueError when it cannot be one."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if not data:
            raise ValueError("image bytes are empty")
        return data
    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as file:
            return file.read()
    # Recognised by module, so that the SDK imports neither PIL nor numpy unless given one.
    if type(image).__module__.startswith("PIL."):
        return _png(image)
    if type(image).__module__ == "numpy" and hasattr(image, "dtype"):
        return _array_to_png(image)
    raise TypeError(f"cannot send a {type(image).__name__} as an image: pass a path, bytes, a "
                    "PIL image or a numpy uint8 array HxWx3")


def _array_to_png(array: Any) -> bytes:
    from PIL import Image

    if str(array.dtype) != "uint8":
        raise ValueError(f"image arrays must be uint8 (0..255), got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(f"image arrays must be HxWx3 (RGB), HxW (grey) or HxWx4 (RGBA), got "
                         f"shape {tuple(array.shape)}")
    if 0 in array.shape:
        raise ValueError(f"image array has an empty dimension: {tuple(array.shape)}")
    return _png(Image.fromarray(array))


def shrink_for_model(data: bytes, min_side: int) -> bytes:
    """`data` re-encoded with its shorter side at SHRINK_MARGIN x `min_side`, EXIF
    orientation applied; unchanged when it is already that small or Pillow cannot read it
    (the server then says what is wrong). JPEGs stay JPEG (quality 95, no chroma
    subsampling); anything else becomes PNG, losslessly."""
    from PIL import Image, ImageOps

    target = SHRINK_MARGIN * min_side
    try:
        image = Image.open(io.BytesIO(data))
        if min(image.size) <= target:
            return data
        is_jpeg = image.format in ("JPEG", "MPO")
        if is_jpeg:
            image.draft("RGB", (target, target))
        image = ImageOps.exif_transpose(image)
        width, height = image.size
        scale = target / min(width, height)
        size = (max(target, round(width * scale)), max(target, round(height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    except Exception:
        return data
    buffer = io.BytesIO()
    if is_jpeg:
        image.convert("RGB").save(buffer, "JPEG", quality=SHRINK_JPEG_QUALITY, subsampling=0)
    else:
        image.save(buffer, "PNG")
    return buffer.getvalue()
