"""Turns what a caller has into the encoded image bytes the server decodes.

Accepted: a path (str or os.PathLike) to an image file, the file's bytes, a PIL image, or a
numpy uint8 array HxWx3 (RGB), HxW (grey) or HxWx4 (RGBA). Files and bytes go as they are;
arrays and PIL images are encoded losslessly as PNG, so the server sees the same pixels.
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
