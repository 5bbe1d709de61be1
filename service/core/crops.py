"""Test-time crop schemes: one image in, the list of crops a model scores and averages.

A scheme is a pure function of the image, the model's `InputSpec` and the scheme's `resize`
(the shorter side the image is scaled to before cropping; the spec's own by default). Every
crop is `size` x `size` and carries its geometry (`scale`, `box`, `mirrored`) so tests and
clients can check exactly what the model saw. The schemes, crops in this order:

* 1 — the centre crop of the resized image, the same pixels as `preprocess`.
* 5 — the centre and the four corner crops (top-left, top-right, bottom-left, bottom-right)
  of the resized image; Krizhevsky et al. 2012 (AlexNet), §4.1: "five 224×224 patches (the
  four corner patches and the center patch) as well as their horizontal reflections".
* 10 — those five, then their horizontal mirrors in the same order (AlexNet's 10 patches).
* 144 — Szegedy et al. 2014 (GoogLeNet), §7: the image is resized to 4 scales with shorter
  side 256, 288, 320 and 352 (here `resize * s / 256`, so a model's own resize plays the part
  of 256); at each scale the left, centre and right squares are taken (top, centre and
  bottom for portrait images); from each square the 4 corner crops and the centre crop, plus
  the square itself resized to `size`; and the mirrors of all of those: 4 x 3 x 6 x 2 = 144.

Boxes are (left, top, right, bottom) in the image resized to `scale` (its shorter side).

When a model's resize equals its input size (LeNet-5: 32 and 32) the corner crops of the
resized image would all be the centre crop, so the multi-crop schemes then resize to
`size * 9 / 8` (36 for LeNet-5): the corners lie 2 pixels from the centre, the shift
LeNet-5's training already applies (`model_store.training.lenet5.MAX_SHIFT`), i.e. half a
pixel of an 8x8 digit. Scheme 1 always uses the spec's resize, so it stays `preprocess`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from model_store.specs import InputSpec
from model_store.transforms import (
    centre_crop_box,
    resize_shorter_side,
    resize_to,
    resized_centre_crop,
    resized_size,
    to_model_input,
)
from service.core.arguments import integer_argument
from service.core.errors import InvalidArgument

CROP_SCHEMES = (1, 5, 10, 144)
# GoogLeNet's four test scales (shorter side), relative to its 256 (Szegedy et al. 2014, §7).
GOOGLENET_SCALES = (256, 288, 320, 352)
# Resize / size for multi-crop when a spec leaves no margin (see the module docstring).
ADAPTED_RESIZE_RATIO = 9 / 8

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Crop:
    """One crop: the size x size image the model sees and where it came from."""

    image: Image.Image
    scale: int  # shorter side of the resized image the box lies in
    box: Box  # (left, top, right, bottom) in that resized image
    mirrored: bool


def check_crop_scheme(value: Any) -> int:
    """The crop count as an int, or InvalidArgument naming the valid ones."""
    valid = ", ".join(str(c) for c in CROP_SCHEMES)
    try:
        scheme = integer_argument(value, "crops")  # refuses inf, NaN, 1e400 and booleans
    except InvalidArgument:
        scheme = None
    if scheme not in CROP_SCHEMES:
        raise InvalidArgument(f"crops must be one of {valid}, got {value!r}",
                              valid_crops=list(CROP_SCHEMES))
    return scheme


def crop_resize(spec: InputSpec, scheme: int, resize: int | None = None) -> int:
    """The shorter side the scheme resizes to: `resize` if given, else as documented above."""
    if resize is not None:
        if resize < spec.size:
            raise InvalidArgument(f"crop resize {resize} is smaller than the input size "
                                  f"{spec.size}")
        return resize
    if scheme == 1 or spec.resize > spec.size:
        return spec.resize
    return round(spec.size * ADAPTED_RESIZE_RATIO)


def decode_side(spec: InputSpec, scheme: int, resize: int | None = None) -> int:
    """The largest shorter side the scheme resizes the image to: what decoding must cover."""
    base = crop_resize(spec, scheme, resize)
    if scheme == 144:
        return round(base * GOOGLENET_SCALES[-1] / GOOGLENET_SCALES[0])
    return base


def decode_sides(spec: InputSpec) -> dict[str, int]:
    """`decode_side` of every scheme, keyed by the crop count as text (as JSON keys are)."""
    return {str(scheme): decode_side(spec, scheme) for scheme in CROP_SCHEMES}


def five_boxes(width: int, height: int, size: int) -> list[Box]:
    """Centre, top-left, top-right, bottom-left, bottom-right size x size boxes."""
    return [
        centre_crop_box(width, height, size),
        (0, 0, size, size),
        (width - size, 0, width, size),
        (0, height - size, size, height),
        (width - size, height - size, width, height),
    ]


def square_boxes(width: int, height: int) -> list[Box]:
    """GoogLeNet's left, centre, right squares (top, centre, bottom for portrait images)."""
    side = min(width, height)
    centre = centre_crop_box(width, height, side)
    if width >= height:
        return [(0, 0, side, side), centre, (width - side, 0, width, side)]
    return [(0, 0, side, side), centre, (0, height - side, side, height)]


def _with_mirrors(crops: list[Crop]) -> list[Crop]:
    return crops + [Crop(c.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), c.scale, c.box,
                         True) for c in crops]


def crop_images(image: Image.Image, spec: InputSpec, scheme: int,
                resize: int | None = None) -> list[Crop]:
    """The scheme's crops of `image`, each spec.size x spec.size, in the documented order."""
    scheme = check_crop_scheme(scheme)
    mode = "L" if spec.grayscale else "RGB"
    if image.mode != mode:
        image = image.convert(mode)
    base = crop_resize(spec, scheme, resize)
    if scheme == 1:  # the one crop's box alone is resampled, as `preprocess` does
        box = centre_crop_box(*resized_size(image, base), spec.size)
        return [Crop(resized_centre_crop(image, base, spec.size, spec.interpolation), base, box,
                     False)]
    if scheme != 144:
        resized = resize_shorter_side(image, base, spec.interpolation)
        crops = [Crop(resized.crop(box), base, box, False)
                 for box in five_boxes(*resized.size, spec.size)]
        return crops if scheme == 5 else _with_mirrors(crops)
    crops = []
    for s in GOOGLENET_SCALES:
        scale = round(base * s / GOOGLENET_SCALES[0])
        resized = resize_shorter_side(image, scale, spec.interpolation)
        for left, top, right, bottom in square_boxes(*resized.size):
            inner = [(left + x0, top + y0, left + x1, top + y1)
                     for x0, y0, x1, y1 in five_boxes(scale, scale, spec.size)]
            crops.extend(Crop(resized.crop(box), scale, box, False) for box in inner)
            square = (left, top, right, bottom)
            crops.append(Crop(resize_to(resized.crop(square), (spec.size, spec.size),
                                        spec.interpolation), scale, square, False))
    return _with_mirrors(crops)


def crop_tensors(image: Image.Image, spec: InputSpec, scheme: int,
                 resize: int | None = None) -> np.ndarray:
    """The scheme's crops as one (n, C, size, size) float32 batch of model inputs."""
    return np.stack([to_model_input(c.image, spec)
                     for c in crop_images(image, spec, scheme, resize)])
