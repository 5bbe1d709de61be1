"""Fuzzing the image decoder: mutated real files of every accepted format must either decode
to an RGB image or be refused with `InvalidImage` / `ImageTooLarge`, never raise anything else.

The seeds are a real photo (scikit-image's chelsea, shrunk) saved as JPEG (baseline and
progressive), PNG, palette GIF, WebP and TIFF; hypothesis flips, overwrites, inserts and
deletes bytes, truncates them, or splices two files. Bounded: a fixed number of examples.
"""

from __future__ import annotations

import io
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from service.core.decoding import decode_image
from service.core.errors import ImageTooLarge, InvalidImage

# PIL warns about the corrupt metadata it skips; that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# Small enough that a mutated header claiming a big image is refused before a slow decode.
MAX_PIXELS = 1_000_000


@cache
def seeds() -> dict[str, bytes]:
    from skimage import data

    photo = Image.fromarray(data.chelsea()).resize((90, 60))
    saves = {"jpeg": ("JPEG", {"quality": 90}),
             "progressive_jpeg": ("JPEG", {"progressive": True}),
             "png": ("PNG", {}), "webp": ("WEBP", {"quality": 80}), "tiff": ("TIFF", {})}
    files = {}
    for name, (fmt, args) in saves.items():
        buffer = io.BytesIO()
        photo.save(buffer, fmt, **args)
        files[name] = buffer.getvalue()
    buffer = io.BytesIO()
    photo.convert("P").save(buffer, "GIF")
    files["gif"] = buffer.getvalue()
    return files


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(seeds()[draw(st.sampled_from(sorted(seeds())))])
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate",
                                     "splice"]))
        # Headers matter most: half the positions fall in the first 64 bytes.
        at = draw(st.one_of(st.integers(0, min(63, len(data) - 1)),
                            st.integers(0, len(data) - 1)))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at:at + len(chunk)] = chunk
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del data[at:]
        else:
            other = seeds()[draw(st.sampled_from(sorted(seeds())))]
            data[at:] = other[draw(st.integers(0, len(other) - 1)):]
    return bytes(data)


def decodes_or_is_refused(data: bytes) -> None:
    try:
        image = decode_image(data, MAX_PIXELS)
    except (InvalidImage, ImageTooLarge):
        return
    assert image.mode == "RGB" and image.width > 0 and image.height > 0
    image.tobytes()  # the pixels are really there


@pytest.mark.parametrize("name", ["jpeg", "progressive_jpeg", "png", "gif", "webp", "tiff"])
def test_the_seeds_decode(name):
    assert decode_image(seeds()[name]).size == (90, 60)


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_images_decode_or_are_refused_cleanly(data):
    decodes_or_is_refused(data)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.binary(max_size=2048))
def test_random_bytes_decode_or_are_refused_cleanly(data):
    decodes_or_is_refused(data)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"II*\x00", b"MM\x00*",
                        b"RIFF\x00\x00\x00\x00WEBP", b"BM"]), st.binary(max_size=512))
def test_a_valid_magic_number_followed_by_junk_is_refused_cleanly(magic, junk):
    decodes_or_is_refused(magic + junk)
