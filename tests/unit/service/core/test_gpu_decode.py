"""GPU JPEG decoding: the header checks before any GPU work, the routing between nvJPEG and the
CPU, the fallback, and the GPU preprocessing itself.

The preprocessing and fallback tests run the very code the GPU runs with torchvision's CPU
device (`decode_jpeg(device="cpu")` shares the API, not nvJPEG); a machine with a GPU runs
the same code through nvJPEG in `make bench-gpu`."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps
from skimage import data

from model_store import registry
from model_store.transforms import preprocess
from service.core import gpu_decode
from service.core.decoding import DecodeLimits, decode_image
from service.core.errors import DeviceUnavailable, ImageTooLarge, InvalidImage
from service.core.gpu_decode import GpuJpegPreprocessor, check_header, for_config
from tests.conftest import encode

LIMITS = DecodeLimits(40_000_000)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) claims another size: a decompression bomb."""
    jpeg = bytearray(encode(data.chelsea(), "JPEG", quality=80))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(jpeg)


class RecordingDecoder(GpuJpegPreprocessor):
    """Runs on torchvision's CPU device, and records what was sent to the decoder."""

    def __init__(self, min_pixels: int = 0, fail: bool = False):
        super().__init__("cpu", min_pixels)
        self.sent: list[int] = []
        real = self.decode_jpeg

        def decode(encoded, **options):
            self.sent.extend(len(e) for e in encoded)
            if fail:
                raise RuntimeError("nvJPEG: simulated decode failure")
            return real(encoded, **options)

        self.decode_jpeg = decode


def test_header_checks_refuse_before_decoding():
    with pytest.raises(InvalidImage, match="empty body"):
        check_header(b"", DecodeLimits(1000))
    with pytest.raises(InvalidImage, match="not an image file"):
        check_header(b"GIF89a? no, just text", DecodeLimits(1000))
    with pytest.raises(ImageTooLarge, match="50000x40000 = 2000000000 pixels"):
        check_header(jpeg_claiming(50000, 40000), LIMITS, "images[1]")
    header = check_header(encode(data.chelsea(), "PNG"), LIMITS)
    assert (header.format, header.width, header.height) == ("PNG", 451, 300)


def test_a_bomb_in_the_batch_stops_it_before_anything_is_decoded():
    decoder = RecordingDecoder()
    good = encode(data.coffee(), "JPEG", quality=90)
    with pytest.raises(ImageTooLarge) as caught:
        decoder.preprocess([good, jpeg_claiming(50000, 40000)],
                           registry.get("efficientnet_lite0").input, LIMITS)
    assert "images[1]" in caught.value.message
    assert decoder.sent == []


def test_only_large_jpegs_go_to_the_gpu():
    decoder = RecordingDecoder(min_pixels=200_000)
    large = encode(data.astronaut(), "JPEG", quality=90)  # 512 x 512
    small = encode(data.chelsea(), "JPEG", quality=90)  # 451 x 300
    png = encode(data.rocket(), "PNG")  # 640 x 427, not a JPEG
    batch, _, _ = decoder.preprocess([small, large, png],
                                     registry.get("efficientnet_lite0").input, LIMITS)
    assert decoder.sent == [len(large)]
    assert batch.shape == (3, 3, 224, 224)


def test_a_jpeg_the_gpu_cannot_decode_gets_the_cpu_answer():
    truncated = encode(data.chelsea(), "JPEG", quality=90)[:6000]
    spec = registry.get("efficientnet_lite0").input
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        RecordingDecoder().preprocess([truncated], spec, LIMITS)  # really fails to decode
    # a decoder failure on good images: the CPU decodes them all
    photos = [encode(data.chelsea(), "JPEG", quality=90), encode(data.coffee(), "JPEG")]
    failing = RecordingDecoder(fail=True)
    batch, _, _ = failing.preprocess(photos, spec, LIMITS)
    assert failing.sent  # it was tried
    expected = np.stack([preprocess(decode_image(p), spec) for p in photos])
    np.testing.assert_array_equal(batch, expected)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2", "lenet5"])
def test_gpu_preprocessing_matches_the_cpu_on_real_photos(name):
    """Within one uint8 step of PIL's resize (antialiased both), colour and grayscale."""
    spec = registry.get(name).input
    photos = [encode(data.chelsea(), "JPEG", quality=95), encode(data.coffee(), "JPEG"),
              encode(data.astronaut(), "JPEG")]
    batch, decode_s, preprocess_s = RecordingDecoder().preprocess(photos, spec, LIMITS)
    expected = np.stack([preprocess(decode_image(p), spec) for p in photos])
    one_step = 1.0 / (255.0 * min(spec.std))
    assert np.abs(batch - expected).max() <= one_step * 1.01
    assert np.abs(batch - expected).mean() < one_step / 20
    assert decode_s > 0 and preprocess_s > 0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_on_the_cpu(orientation):
    photo = Image.fromarray(data.chelsea())  # 451 x 300: a turn shows in the shape
    exif = Image.Exif()
    exif[gpu_decode.EXIF_ORIENTATION] = orientation
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    jpeg = buffer.getvalue()
    header = check_header(jpeg, LIMITS)
    assert header.orientation == orientation
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    stored = decode_jpeg(torch.frombuffer(bytearray(jpeg), dtype=torch.uint8),
                         mode=ImageReadMode.RGB)  # as stored: no orientation applied
    turned = gpu_decode.orient(stored, header.orientation)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(jpeg)).convert("RGB")))
    assert turned.permute(1, 2, 0).numpy().shape == expected.shape
    assert np.abs(turned.permute(1, 2, 0).numpy().astype(int) - expected).max() <= 2


def test_cpu_and_auto_without_a_gpu_model_never_ask_torch(monkeypatch):
    """Only the GPU path touches torch: the CPU choices are made before it is asked."""
    def torch_asked():
        raise AssertionError("torch was asked on the CPU path")

    monkeypatch.setattr(gpu_decode, "torch_cuda_problem", torch_asked)
    monkeypatch.setattr(gpu_decode, "GpuJpegPreprocessor", torch_asked)
    assert for_config("cpu", 0, ["cuda"]) is None
    assert for_config("auto", 0, ["cpu", "cpu"]) is None
    assert for_config("auto", 0, []) is None


def test_gpu_decode_without_a_gpu_is_a_device_error(monkeypatch):
    monkeypatch.setattr(gpu_decode, "torch_cuda_problem", lambda: "torch sees no CUDA device")
    with pytest.raises(DeviceUnavailable, match="decode: gpu is configured, but torch sees no"):
        for_config("gpu", 0, ["cuda"])
    assert for_config("auto", 0, ["cuda"]) is None  # auto: logged, the CPU decodes
