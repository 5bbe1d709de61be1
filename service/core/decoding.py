"""Bytes to a PIL image at the scale a request needs, refusing what should not be decoded.

Two steps, so that a request can be priced before any pixel is decoded (see
`service.core.admission`):

* `probe_image` reads the header only. The format must be one of `accepted_formats()`, an
  explicit list of Pillow's decoders (Pillow opens over forty formats; a 1.3 KB JPEG 2000
  declaring 6000 x 6000 costs seconds and half a gigabyte, and nobody sends one). The pixel
  count and the aspect ratio are checked against the limits (a 64 x 625,000 PNG is under
  40 MP, but resizing its shorter side to 256 would make 640 MP), and so is the size of the
  largest resize the request will make.
* `ImageProbe.decode(min_side)` decodes to the smallest scale whose shorter side still
  covers `min_side`, the largest shorter side the request will resize to (the model's
  resize, a crop scheme's largest scale, an ensemble's largest member). JPEGs are scaled by
  1/2, 1/4 or 1/8 inside the DCT (libjpeg's scaled IDCT, through Pillow's `draft`): a 12 MP
  photo decodes in a fifth of the time and a sixtieth of the memory. Other formats are
  decoded in full and then reduced by a whole factor (`Image.reduce`, a box filter) to no
  less than `REDUCING_GAP` times `min_side`, so the final resample is a small step, as
  Pillow's `reducing_gap` does. docs/accuracy.md shows that answers do not change.

Truncated and corrupt files fail at decoding; EXIF orientation is applied; animated images
give their first frame; palette, CMYK, 16-bit and alpha images become RGB the way a viewer
would show them.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from model_store.transforms import PICTURE_BOX, Box, to_rgb
from service.core.errors import ImageTooLarge, InvalidImage

DEFAULT_MAX_PIXELS = 40_000_000
# Panoramas from phones reach about 10:1; past this, an image is a resize bomb, not a photo.
DEFAULT_MAX_ASPECT_RATIO = 20.0
# Pillow's names for the decoders we run. Its JPEG decoder also opens MPO, the multi-picture
# JPEG many cameras write (as "MPO", scaled in the DCT like any JPEG). Phones also send HEIC
# (iPhones by default) and AVIF: Pillow reads AVIF itself where built with libavif, and HEIC
# through the pillow-heif plugin; both decode in full (no DCT scaling), priced as such by
# admission. `accepted_formats()` says which of these this installation has.
BASE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")
_FOR_HUMANS = {"JPEG": "JPEG", "PNG": "PNG", "GIF": "GIF", "BMP": "BMP", "TIFF": "TIFF",
               "WEBP": "WebP", "AVIF": "AVIF", "HEIF": "HEIC/HEIF"}
DCT_SCALED_FORMATS = ("JPEG", "MPO")
# Whole-factor reduction stops this many times above the target: "with reducing_gap >= 3.0
# the result is indistinguishable from fair resampling in most cases" (Pillow's docs, resize).
REDUCING_GAP = 3.0
# JPEGs are scaled in the DCT to a shorter side of at least this many times the target
# (`dct_scale_margin` in the configuration). 1 is the smallest scale that covers the request;
# 2 leaves the final resample a downscale of at least 2, whose filter then dominates, as when
# resizing from full resolution: the top-1 differs from full decoding's on 3 of 510 photo
# comparisons against 19 at 1 (top-5 overlap 0.98-0.998 against 0.96-0.98), for about 6 ms
# more server CPU per 12 MP photo since only the crop is resampled (11-14 ms before;
# docs/accuracy.md, benchmarks.md).
DEFAULT_DCT_MARGIN = 2.0

# Formats people send that we do not read, by their signature, so the error can name them
# (HEIC and AVIF where their decoders are missing).
_KNOWN_UNSUPPORTED = (
    (4, (b"ftypheic", b"ftypheix", b"ftyphevc", b"ftypheim", b"ftypheis", b"ftypmif1",
         b"ftypmsf1"), "HEIC/HEIF"),
    (4, (b"ftypavif", b"ftypavis"), "AVIF"),
    (0, (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51"), "JPEG 2000"),
    (0, (b"\x00\x00\x00\x0cJXL \r\n\x87\n", b"\xff\x0a"), "JPEG XL"),
    (0, (b"8BPS",), "Photoshop (PSD)"),
    (0, (b"%PDF",), "PDF"),
    (0, (b"%!PS",), "PostScript"),
    (0, (b"\x00\x00\x01\x00",), "ICO"),
    (0, (b"<svg", b"<?xml"), "SVG/XML"),
)

_TRANSPOSE_FOR_ORIENTATION = {  # EXIF orientation -> the transpose that shows it upright
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112
# How each transpose moves a box: axes swapped first, then mirrored in the new frame.
_SWAPS_AXES = {Image.Transpose.TRANSPOSE, Image.Transpose.TRANSVERSE,
               Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270}
_MIRRORS_X = {Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_180,
              Image.Transpose.ROTATE_270, Image.Transpose.TRANSVERSE}
_MIRRORS_Y = {Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_180,
              Image.Transpose.ROTATE_90, Image.Transpose.TRANSVERSE}

# We enforce our own pixel limit from the header; Pillow's would only warn, later.
Image.MAX_IMAGE_PIXELS = None
# Pillow logs every EXIF tag and PNG chunk at DEBUG: a hostile file's 2,000 tags would be
# 4,000 log lines per request under a debug-level root logger.
logging.getLogger("PIL").setLevel(logging.INFO)
# Its warnings about corrupt metadata it skips carry the tag number, so a file with thousands
# of broken tags would print thousands of distinct lines; the pixels are what we serve.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO


class ImageProbe:
    """An image whose header has been read and checked; nothing decoded yet."""

    def __init__(self, image: Image.Image, field: str):
        self._image = image
        self.field = field
        self.format: str = image.format or "image"
        self.width, self.height = image.size

    @property
    def image(self) -> Image.Image:
        """The opened image, header read, pixels not yet decoded."""
        return self._image

    @property
    def pixels(self) -> int:
        """Full-resolution pixels: what decoding costs in work (and, but for JPEG, memory)."""
        return self.width * self.height

    def check_resize(self, min_side: int, limits: DecodeLimits) -> None:
        """Refuse before decoding if resizing the shorter side to `min_side` would make more
        pixels than the limit (the aspect bound normally prevents it; this is the guard)."""
        short, long = sorted((self.width, self.height))
        resized = math.ceil(long * max(min_side, 1) / short) * max(min_side, 1)
        if resized > limits.max_pixels:
            raise ImageTooLarge(
                f"{self.field}: {self.width}x{self.height} resized to a shorter side of "
                f"{min_side} would be {resized} pixels, over the limit of "
                f"{limits.max_pixels}", width=self.width, height=self.height,
                max_pixels=limits.max_pixels)

    def decode(self, min_side: int | None = None, dct_margin: float = DEFAULT_DCT_MARGIN
               ) -> Image.Image:
        """The image as RGB, its shorter side at least `min_side` (None: full size); JPEGs
        are scaled in the DCT to no less than `dct_margin` x `min_side`. A reduced image
        records the box its picture covers (`model_store.transforms.PICTURE_BOX`)."""
        image = self._image
        if min_side and self.format in DCT_SCALED_FORMATS:
            side = math.ceil(min_side * dct_margin)
            image.draft(None, (side, side))
        try:
            image.seek(0)  # animated GIF/WebP/APNG: the first frame
            image.load()
        except Exception as exc:  # truncated data, bad Huffman tables, bad CRC...
            raise InvalidImage(
                f"{self.field}: truncated or corrupt {self.format} data: {exc}") from None
        box = _picture_in((self.width, self.height), image.size)
        method = _orientation_transpose(image)
        if method is not None:
            box = _transposed_box(box, image.size, method)
            image = image.transpose(method)
        image = to_rgb(image)
        if min_side:
            factor = int(min(image.size) // (REDUCING_GAP * min_side))
            if factor >= 2:
                image = image.reduce(factor)  # rounds up too: the last pixel is partial
                box = (box[0] / factor, box[1] / factor, box[2] / factor, box[3] / factor)
        if box != (0, 0, *image.size):
            image.info[PICTURE_BOX] = box
        return image


@functools.cache
def accepted_formats() -> tuple[str, ...]:
    """Pillow's names of the formats this installation decodes, registering the optional
    decoders once, with one decoding thread each: admission counts one thread per decode."""
    from PIL import features

    formats = list(BASE_FORMATS)
    if features.check("avif"):
        from PIL import AvifImagePlugin

        AvifImagePlugin.DEFAULT_MAX_THREADS = 1
        formats.append("AVIF")
    try:
        import pillow_heif
    except ImportError:
        pass
    else:
        pillow_heif.options.DECODE_THREADS = 1
        pillow_heif.register_heif_opener(thumbnails=False)
        formats.append("HEIF")
    return tuple(formats)


def accepted_for_humans() -> str:
    names = [_FOR_HUMANS[f] for f in accepted_formats()]
    return f"{', '.join(names[:-1])} or {names[-1]}"


def unsupported_format_name(data: bytes) -> str | None:
    for offset, signatures, name in _KNOWN_UNSUPPORTED:
        if any(data[offset:offset + len(s)] == s for s in signatures):
            return name
    return None


def probe_image(data: bytes, limits: DecodeLimits = DecodeLimits(), field: str = "image"
                ) -> ImageProbe:
    """Read and check the header of `data`: InvalidImage or ImageTooLarge when refused."""
    if not data:
        raise InvalidImage(f"{field}: empty body, expected an encoded image "
                           f"({accepted_for_humans()})")
    try:
        image = Image.open(io.BytesIO(data), formats=accepted_formats())
    except UnidentifiedImageError:
        known = unsupported_format_name(data)
        if known:
            raise InvalidImage(f"{field}: a {known} image, a format this service does not "
                               f"read; send {accepted_for_humans()}", format=known) from None
        raise InvalidImage(
            f"{field}: not an image file ({len(data)} bytes, starting {data[:8]!r}); "
            f"send {accepted_for_humans()} bytes") from None
    except Exception as exc:
        raise InvalidImage(f"{field}: cannot read image header: {exc}") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"{field}: {width}x{height} = {width * height} pixels exceeds the limit of "
            f"{limits.max_pixels} pixels", width=width, height=height,
            max_pixels=limits.max_pixels)
    if width == 0 or height == 0:
        raise InvalidImage(f"{field}: image has no pixels ({width}x{height})")
    ratio = max(width, height) / min(width, height)
    if ratio > limits.max_aspect_ratio:
        raise InvalidImage(
            f"{field}: {width}x{height} is {ratio:.0f}:1, beyond the aspect ratio limit of "
            f"{limits.max_aspect_ratio:g}:1", width=width, height=height,
            max_aspect_ratio=limits.max_aspect_ratio)
    return ImageProbe(image, field)


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, field: str = "image",
                 min_side: int | None = None,
                 max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
                 dct_margin: float = DEFAULT_DCT_MARGIN) -> Image.Image:
    """Probe and decode in one call (tools, tests and evaluation; the service admits in
    between, see `service.core.admission`)."""
    limits = DecodeLimits(max_pixels, max_aspect_ratio)
    probe = probe_image(data, limits, field)
    if min_side:
        probe.check_resize(min_side, limits)
    return probe.decode(min_side, dct_margin)


def _orientation_transpose(image: Image.Image) -> Image.Transpose | None:
    """The transpose that shows the image upright by its EXIF orientation. Read from the
    parsed tag alone (ImageOps.exif_transpose also rewrites the whole EXIF block, thousands
    of tags in a hostile file); a malformed EXIF block must not reject a decodable image."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except Exception:
        return None
    return _TRANSPOSE_FOR_ORIENTATION.get(orientation)


def _picture_in(full: tuple[int, int], decoded: tuple[int, int]) -> Box:
    """The box of the `decoded` pixels that a `full`-sized picture covers: libjpeg's DCT
    scaling by 1/2, 1/4 or 1/8 rounds the size up. The whole image otherwise."""
    for scale in (2, 4, 8):
        if all(-(-side // scale) == got for side, got in zip(full, decoded, strict=True)):
            return 0.0, 0.0, full[0] / scale, full[1] / scale
    return 0.0, 0.0, float(decoded[0]), float(decoded[1])


def _transposed_box(box: Box, size: tuple[int, int], method: Image.Transpose) -> Box:
    """`box` of an image of `size`, in the coordinates of that image transposed by `method`."""
    left, top, right, bottom = box
    width, height = size
    if method in _SWAPS_AXES:
        left, top, right, bottom = top, left, bottom, right
        width, height = height, width
    if method in _MIRRORS_X:
        left, right = width - right, width - left
    if method in _MIRRORS_Y:
        top, bottom = height - bottom, height - top
    return left, top, right, bottom

