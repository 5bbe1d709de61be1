"""The evaluation tool's photo set: every photo it names is one the project has."""

from __future__ import annotations

from tools import evaluate, photos


def test_every_evaluated_photo_loads_as_an_rgb_image():
    assert set(evaluate.PHOTOS) <= set(photos.PHOTO_NAMES)
    for name in evaluate.PHOTOS:
        image = photos.photo(name)
        assert image.mode == "RGB" and min(image.size) >= 100
        assert evaluate.photo(name).startswith(b"\x89PNG")
