"""Image to input tensor, as the variant's `InputSpec` prescribes.

Shared by training (LeNet-5), evaluation, ONNX parity checks and the serving core, so that a
model sees exactly the same preprocessing wherever it runs. Pure numpy/PIL: no torch.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image

from model_store.specs import InputSpec

RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}
# Each filter's reach in source pixels at a scale of 1 (Pillow's Resample.c: bilinear's
# triangle 1, bicubic's 2); a downscale by s widens it s times.
_FILTER_SUPPORT = {"bilinear": 1.0, "bicubic": 2.0, "nearest": 0.5}


# Modes whose values run past 8 bits: PIL's own conversion clips them at 255.
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB as a viewer shows it: alpha composited over white, 16-bit and float ranges scaled
    to 8 bits (the service's decoder and fine-tuning's image folders both use it)."""
    if image.mode == "RGB":
        return image
    if image.mode in _WIDE_MODES:
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / (high - low)) if high > low else pixels * 0
        image = Image.fromarray(scaled.astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


# A reduced decode (JPEG scaled in the DCT, a whole-factor reduce) rounds its size up: a
# 4247-pixel row at 1/8 decodes to 531 pixels, the last one mostly padding. The decoder
# records, in `Image.info` under this key, the box (fractional pixels) that the picture
# covers, and resizing samples that box, so the result lines up with a resize from full
# resolution (docs/accuracy.md: this cut the mean input difference to full decoding by more
# than half).
PICTURE_BOX = "picture_box"

Box = tuple[float, float, float, float]


def picture_box(image: Image.Image) -> Box | None:
    """The box of `image` that its picture covers, if its decoder recorded one and it still
    belongs to this image (a crop or resize of it inherits `info` but not its geometry)."""
    box = image.info.get(PICTURE_BOX)
    if box is None:
        return None
    left, top, right, bottom = box
    width, height = image.size
    if 0 <= left < 1 and 0 <= top < 1 and width - 1 < right <= width \
            and height - 1 < bottom <= height:
        return box
    return None


def shorter_side_size(width: float, height: float, target: int) -> tuple[int, int]:
    """The size with the shorter side at `target` and the aspect ratio kept (rounded)."""
    scale = target / min(width, height)
    return max(target, round(width * scale)), max(target, round(height * scale))


def resize_to(image: Image.Image, size: tuple[int, int], interpolation: str,
              box: Box | None = None) -> Image.Image:
    """`image` (or its `box`, fractional pixels) resampled to `size`, in two single-axis
    passes, horizontal first, the second over the rows the box's filter reaches.

    The order is ours, not Pillow's: since Pillow 13 (python-pillow/Pillow#9549) one call
    runs the vertical pass first when it reduces the height much more, and given a crop's
    box it does so for portrait crops; the two orders round differently (up to 6 levels on a
    fifth of a crop's values). Fixed, the order makes a crop's box resampled alone equal the
    same crop of the whole image resampled, to within the 32-bit floats Pillow keeps a box's
    corners in (1 level, on at most 0.03 % of values: tests/unit/model_store)."""
    left, top, right, bottom = box or (0, 0, *image.size)
    # Clamped: a box scaled back from a resized size can end a rounding error past the image.
    left, top = max(0.0, left), max(0.0, top)
    right, bottom = min(float(image.width), right), min(float(image.height), bottom)
    reach = _FILTER_SUPPORT[interpolation] * max((bottom - top) / size[1], 1.0) + 1
    first, last = max(0, math.floor(top - reach)), min(image.height, math.ceil(bottom + reach))
    rows = image if (first, last) == (0, image.height) else \
        image.crop((0, first, image.width, last))
    resample = RESAMPLE[interpolation]
    wide = rows.resize((size[0], rows.height), resample, box=(left, 0, right, rows.height))
    return wide.resize(size, resample, box=(0, top - first, size[0], bottom - first))


def resize_shorter_side(image: Image.Image, target: int, interpolation: str) -> Image.Image:
    box = picture_box(image)
    if box is None:
        width, height = image.size
        if min(width, height) == target:
            return image
        return resize_to(image, shorter_side_size(width, height, target), interpolation)
    size = shorter_side_size(box[2] - box[0], box[3] - box[1], target)
    resized = resize_to(image, size, interpolation, box)
    resized.info.pop(PICTURE_BOX, None)
    return resized


def resized_size(image: Image.Image, target: int) -> tuple[int, int]:
    """The size `resize_shorter_side(image, target, ...)` gives."""
    box = picture_box(image)
    if box is None:
        if min(image.size) == target:
            return image.size
        return shorter_side_size(*image.size, target)
    return shorter_side_size(box[2] - box[0], box[3] - box[1], target)


def resized_centre_crop(image: Image.Image, target: int, size: int,
                        interpolation: str) -> Image.Image:
    """The centre `size` x `size` crop of `image` resized to a shorter side of `target`, as
    `resize_shorter_side` then `centre_crop_box` give it, resampling only the crop's box of
    the picture: about half the work (the crop is 57 % of a 4:3 photo at 224/256)."""
    resized = resized_size(image, target)
    crop = centre_crop_box(*resized, size)
    picture = picture_box(image)
    if picture is None:
        if resized == image.size:
            return image.crop(crop)
        picture = (0, 0, *image.size)
    left, top, right, bottom = picture
    x_scale, y_scale = (right - left) / resized[0], (bottom - top) / resized[1]
    return resize_to(image, (size, size), interpolation,
                     (left + crop[0] * x_scale, top + crop[1] * y_scale,
                      left + crop[2] * x_scale, top + crop[3] * y_scale))


def centre_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the centred size x size square (torchvision's rounding)."""
    left = int(round((width - size) / 2.0))
    top = int(round((height - size) / 2.0))
    return left, top, left + size, top + size


def to_model_input(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """Normalise an already-cropped image of spec.size x spec.size into a (C, H, W) float32."""
    mode = "L" if spec.grayscale else "RGB"
    if image.mode != mode:
        image = image.convert(mode)
    if image.size != (spec.size, spec.size):
        image = resize_to(image, (spec.size, spec.size), spec.interpolation)
    pixels = np.asarray(image)
    channels_first = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    scale, offset = _affine(spec.mean, spec.std)
    # (p / 255 - mean) / std as one multiply-add written straight into the CHW result: the
    # uint8 transpose is cheap, and no float temporaries are made (3x faster on a 224 image).
    tensor = np.empty(channels_first.shape, np.float32)
    np.multiply(channels_first, scale, out=tensor)
    tensor += offset
    return tensor


@functools.cache
def _affine(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    std_array = np.asarray(std, dtype=np.float64)
    scale = (1.0 / (255.0 * std_array)).astype(np.float32)[:, None, None]
    offset = (-np.asarray(mean, dtype=np.float64) / std_array).astype(np.float32)[:, None, None]
    return scale, offset


def preprocess(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """Resize the shorter side, centre-crop, normalise: the single-crop (1-crop) input."""
    mode = "L" if spec.grayscale else "RGB"
    if image.mode != mode:
        image = image.convert(mode)
    return to_model_input(resized_centre_crop(image, spec.resize, spec.size, spec.interpolation),
                          spec)
