"""Image to input tensor, as the variant's `InputSpec` prescribes.

Shared by training (LeNet-5), evaluation, ONNX parity checks and the serving core, so that a
model sees exactly the same preprocessing wherever it runs. Pure numpy/PIL: no torch.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from model_store.specs import InputSpec

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


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
    """`image` (or its `box`, fractional pixels) resampled to `size`."""
    return image.resize(size, _RESAMPLE[interpolation], box=box)


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
        image = image.resize((spec.size, spec.size), _RESAMPLE[spec.interpolation])
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
    resized = resize_shorter_side(image, spec.resize, spec.interpolation)
    cropped = resized.crop(centre_crop_box(*resized.size, spec.size))
    return to_model_input(cropped, spec)
