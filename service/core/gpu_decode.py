"""JPEG decoding and preprocessing on the GPU (nvJPEG through torchvision), for large JPEGs.

On a GPU server the CPU's decoding and resizing, not the model, limit throughput; a 12 MP
JPEG takes the CPU tens of milliseconds. With `decode: gpu` (or `auto` where a model runs on
a GPU provider and torchvision sees CUDA) the JPEGs of a request that are at least
`gpu_decode_min_pixels` large are decoded together by nvJPEG
(`torchvision.io.decode_jpeg(..., device="cuda")`), then resized, centre-cropped and
normalised on the GPU as `model_store.transforms.preprocess` does on the CPU. Smaller images
and other formats go the CPU way (`service.core.decoding.decode_image`).

The hostile-input checks come first, on the CPU, from the header alone (`check_header`, the
CPU path's own `probe_image`): an empty body, a file that is no image or in a format we do
not read, a pixel count or aspect ratio over the limits, or a zero-sized image are refused
before any byte reaches the GPU. A JPEG that nvJPEG cannot decode (truncated,
corrupt) is decoded again on the CPU, which says precisely what is wrong (a 4xx).

torch is imported only when decoding resolves to the GPU: the CPU serving path never loads
it. EXIF orientation is read from the header and applied on the GPU (torchvision applies it
on the CPU only).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_store.specs import InputSpec
from model_store.transforms import centre_crop_box, preprocess
from service.core.config import usable_cores
from service.core.decoding import DecodeLimits, decode_image, probe_image
from service.core.errors import DeviceUnavailable

log = logging.getLogger("convzoo.gpu_decode")

EXIF_ORIENTATION = 0x0112
# Modes nvJPEG decodes to what the CPU path would give; CMYK/YCCK JPEGs go the CPU way.
GPU_MODES = ("RGB", "L")


@dataclass(frozen=True)
class ImageHeader:
    format: str | None
    mode: str
    width: int
    height: int
    orientation: int = 1  # EXIF orientation, 1 = as stored

    @property
    def pixels(self) -> int:
        return self.width * self.height


def check_header(data: bytes, limits: DecodeLimits, field: str = "image") -> ImageHeader:
    """What the CPU path checks before decoding a pixel (`probe_image`), and what the GPU
    path needs to know of the image."""
    probe = probe_image(data, limits, field)
    image = probe.image
    orientation = 1
    with contextlib.suppress(Exception):  # a malformed EXIF block: as stored, as on the CPU
        orientation = int(image.getexif().get(EXIF_ORIENTATION, 1))
    return ImageHeader(image.format, image.mode, probe.width, probe.height,
                       orientation if 1 <= orientation <= 8 else 1)


# EXIF orientation -> (axis to flip first, or None; counter-clockwise quarter turns after),
# the transposes PIL's `ImageOps.exif_transpose` applies (5 = TRANSPOSE, 7 = TRANSVERSE).
_ORIENTATION_STEPS = {1: (None, 0), 2: ("width", 0), 3: (None, 2), 4: ("height", 0),
                      5: ("width", 1), 6: (None, 3), 7: ("width", 3), 8: (None, 1)}


def orient(tensor: Any, orientation: int) -> Any:
    """A (C, H, W) tensor turned as PIL's `ImageOps.exif_transpose` turns the image."""
    import torch

    flip, turns = _ORIENTATION_STEPS.get(orientation, (None, 0))
    if flip is not None:
        tensor = torch.flip(tensor, dims=[2 if flip == "width" else 1])
    # k=1 turns counter-clockwise in the (H, W) plane, as PIL's ROTATE_90.
    return torch.rot90(tensor, k=turns, dims=[1, 2]) if turns else tensor


def preprocess_tensor(image: Any, spec: InputSpec) -> Any:
    """`model_store.transforms.preprocess` for a uint8 (C, H, W) tensor, on its device: resize
    the shorter side (antialiased, as PIL), centre-crop, normalise to float32."""
    import torch
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    _, height, width = image.shape
    if min(width, height) != spec.resize:
        scale = spec.resize / min(width, height)
        size = [max(spec.resize, round(height * scale)), max(spec.resize, round(width * scale))]
        image = F.resize(image, size, interpolation=InterpolationMode(spec.interpolation),
                         antialias=True)
    left, top, right, bottom = centre_crop_box(image.shape[2], image.shape[1], spec.size)
    image = image[:, top:bottom, left:right]
    mean = torch.tensor(spec.mean, device=image.device).view(-1, 1, 1)
    std = torch.tensor(spec.std, device=image.device).view(-1, 1, 1)
    return (image.float() / 255.0 - mean) / std


class GpuJpegPreprocessor:
    """A request's images to one (N, C, H, W) float32 batch, the large JPEGs through nvJPEG."""

    def __init__(self, device: str = "cuda", min_pixels: int = 0):
        import torch  # only here: the CPU serving path never builds one of these
        import torchvision.io

        self.torch = torch
        self.decode_jpeg = torchvision.io.decode_jpeg
        self.device = device
        self.min_pixels = min_pixels
        # The request's other images decode side by side, as on the CPU path; a pool of its
        # own, since `preprocess` itself runs on a thread of the core's preprocessing pool.
        self._cpu_pool = ThreadPoolExecutor(max(2, usable_cores()),
                                            thread_name_prefix="cpu-decode")

    def takes(self, header: ImageHeader) -> bool:
        return (header.format == "JPEG" and header.mode in GPU_MODES
                and header.pixels >= self.min_pixels)

    def preprocess(self, images: list[bytes], spec: InputSpec, limits: DecodeLimits
                   ) -> tuple[np.ndarray, float, float]:
        """The batch, and the seconds spent decoding and preprocessing it."""
        from torchvision.io import ImageReadMode

        started = time.perf_counter()
        fields = ["image"] if len(images) == 1 else [f"images[{i}]" for i in range(len(images))]
        # Every check, for every image, before anything is sent to the GPU.
        headers = [check_header(data, limits, field) for data, field in zip(
            images, fields, strict=True)]
        on_gpu = [i for i, header in enumerate(headers) if self.takes(header)]
        decoded: dict[int, Any] = {}
        if on_gpu:
            mode = ImageReadMode.GRAY if spec.grayscale else ImageReadMode.RGB
            encoded = [self.torch.frombuffer(bytearray(images[i]), dtype=self.torch.uint8)
                       for i in on_gpu]
            try:
                tensors = self.decode_jpeg(encoded, mode=mode, device=self.device)
                decoded = {i: orient(t, headers[i].orientation)
                           for i, t in zip(on_gpu, tensors, strict=True)}
            except RuntimeError as exc:  # truncated or corrupt: the CPU says what is wrong
                log.info("nvJPEG could not decode a batch of %d (%s); decoding on the CPU",
                         len(on_gpu), exc)
        decode_s = time.perf_counter() - started  # header checks and nvJPEG
        batch = np.empty((len(images), spec.channels, spec.size, spec.size), np.float32)
        indices = sorted(decoded)
        # Queued on the GPU first, so that it works while the CPU decodes the others.
        on_gpu_batch = (self.torch.stack([preprocess_tensor(decoded[i], spec) for i in indices])
                        if indices else None)

        def on_cpu(index: int) -> float:
            t0 = time.perf_counter()
            image = decode_image(images[index], limits.max_pixels, fields[index],
                                 min_side=spec.resize, max_aspect_ratio=limits.max_aspect_ratio)
            decoded_at = time.perf_counter()
            batch[index] = preprocess(image, spec)
            return decoded_at - t0

        cpu_decode_s = list(self._cpu_pool.map(
            on_cpu, [i for i in range(len(images)) if i not in decoded]))
        decode_s += max(cpu_decode_s, default=0.0)
        if on_gpu_batch is not None:  # one copy back; the batcher takes host arrays
            batch[indices] = on_gpu_batch.cpu().numpy()
        return batch, decode_s, max(0.0, time.perf_counter() - started - decode_s)


def torch_cuda_problem() -> str | None:
    """Why torchvision cannot decode on a GPU here (None: it can). Imports torch."""
    try:
        import torch
        import torchvision.io  # noqa: F401
    except ImportError as exc:
        return f"torch/torchvision not importable: {exc}"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    return None


def for_config(decode: str, min_pixels: int, devices_in_use: Iterable[str]
               ) -> GpuJpegPreprocessor | None:
    """The GPU preprocessor `decode` asks for, or None for the CPU path.

    `gpu` with no usable GPU is refused (`DeviceUnavailable`); `auto` uses the GPU only where
    a loaded model runs on one (else torch is not even imported), and logs why not."""
    if decode == "cpu":
        return None
    if decode == "auto" and "cuda" not in set(devices_in_use):
        log.info("decode auto: no model runs on a GPU, JPEGs decode on the CPU")
        return None
    problem = torch_cuda_problem()
    if problem is not None:
        if decode == "gpu":
            raise DeviceUnavailable(f"decode: gpu is configured, but {problem}")
        log.warning("decode auto: JPEGs decode on the CPU: %s", problem)
        return None
    log.info("JPEGs of at least %d pixels decode on the GPU (nvJPEG)", min_pixels)
    return GpuJpegPreprocessor("cuda", min_pixels)
