"""The photos the benchmark sends: one real photo (scikit-image's chelsea, a cat) at the sizes
users send, from a web thumbnail to a 12 MP camera JPEG, and a large PNG.

Larger sizes are the photo upscaled (bicubic) to a camera's 4:3 frame, with a sensor's grain
added (Gaussian, sigma 3 of 255, seeded) and saved as a camera would (JPEG quality 90): an
upscaled photo alone is smoother than any camera's and compresses to half a real file's size,
and decoding time follows the file's size. The photos themselves come from `tools.photos`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tools import photos

# name: (width, height, format); None keeps chelsea's own 451x300.
PHOTO_SIZES: dict[str, tuple[int, int, str] | None] = {
    "small": None,
    "1mp": (1155, 866, "JPEG"),
    "3mp": (2000, 1500, "JPEG"),  # the smallest of what phones and cameras send
    "12mp": (4000, 3000, "JPEG"),
    "png": (2000, 1500, "PNG"),
}
_CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
GRAIN_SIGMA = 3.0


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes
    format: str  # "JPEG" | "PNG"
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self.format]

    @property
    def filename(self) -> str:
        return f"{self.name}.{'jpg' if self.format == 'JPEG' else 'png'}"

    def describe(self) -> dict:
        return {"width": self.width, "height": self.height, "format": self.format,
                "megapixels": round(self.width * self.height / 1e6, 2),
                "bytes": len(self.data)}


def make_photo(name: str) -> Photo:
    if name not in PHOTO_SIZES:
        raise ValueError(f"unknown photo {name!r}; choose from {', '.join(PHOTO_SIZES)}")
    size = PHOTO_SIZES[name]
    fmt = "JPEG"
    if size is None:
        image = photos.photo("chelsea")
    else:
        width, height, fmt = size
        image = photos.framed("chelsea", width, height, GRAIN_SIGMA)
    data = photos.encode(image, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return Photo(name, data, fmt, image.width, image.height)
