"""Encoded images to model inputs, off the event loop: header check, admission by cost,
decoding at the scale the request needs, then the request's transform (a model's
preprocessing or a crop scheme).

The header is read on a thread of its own, the request is admitted to its decode lane by its
pixel count (`service.core.admission`), and decoding and the transform run together on one
of that lane's threads, so a photo costs one hand-off there and one back. Transforms of an
image already decoded (an ensemble's members, each with its own crops) run on a separate
pool, never queued behind other requests' admission.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from PIL import Image

from service.core.admission import DecodeAdmission
from service.core.config import ServingConfig, usable_cores
from service.core.decoding import DecodeLimits, probe_image

T = TypeVar("T")


@dataclass(frozen=True)
class Prepared(Generic[T]):
    """What a transform made of one image, and the seconds each stage took."""

    value: T
    wait_s: float  # admission and waiting for a decode thread
    decode_s: float
    transform_s: float


def _identity(image: Image.Image) -> Image.Image:
    return image


class ImagePipeline:
    def __init__(self, config: ServingConfig):
        self.limits = DecodeLimits(config.max_image_pixels, config.max_aspect_ratio)
        self.dct_margin = config.dct_scale_margin
        self.admission = DecodeAdmission(config.lanes, config.decode_wait_s)
        self._transform_executor = ThreadPoolExecutor(
            max(2, usable_cores()), thread_name_prefix="preprocess")

    async def prepare(self, data: bytes, field: str, min_side: int,
                      transform: Callable[[Image.Image], T] = _identity,
                      deadline: float | None = None) -> Prepared[T]:
        """`transform` of the image in `data`, decoded with its shorter side >= min_side."""
        probe = await self.admission.read_header(probe_image, data, self.limits, field)
        probe.check_resize(min_side, self.limits)

        def decode_and_transform() -> tuple[T, float, float]:
            started = time.perf_counter()
            image = probe.decode(min_side, self.dct_margin)
            decoded = time.perf_counter()
            value = transform(image)
            return value, decoded - started, time.perf_counter() - decoded

        lane = self.admission.lane_for(probe.pixels)
        (value, decode_s, transform_s), wait_s = await lane.run(
            probe.pixels, decode_and_transform, deadline=deadline)
        return Prepared(value, wait_s, decode_s, transform_s)

    async def prepare_all(self, images: list[bytes], min_side: int,
                          transform: Callable[[Image.Image], T],
                          deadline: float | None = None) -> list[Prepared[T]]:
        """`prepare` for each image, concurrently; fields named images[i] when several."""
        def field(index: int) -> str:
            return "image" if len(images) == 1 else f"images[{index}]"

        return list(await asyncio.gather(*(
            self.prepare(data, field(i), min_side, transform, deadline)
            for i, data in enumerate(images))))

    async def transform(self, image: Image.Image, transform: Callable[[Image.Image], T]
                        ) -> tuple[T, float]:
        """`transform` of an image already decoded, and its seconds."""
        def timed() -> tuple[T, float]:
            started = time.perf_counter()
            return transform(image), time.perf_counter() - started

        return await asyncio.get_running_loop().run_in_executor(self._transform_executor,
                                                                timed)

    async def run_blocking(self, work: Callable[..., T], *args) -> T:
        """`work(*args)` on the transform pool (a path that decodes by other means)."""
        return await asyncio.get_running_loop().run_in_executor(self._transform_executor,
                                                                work, *args)

    def close(self) -> None:
        self.admission.close()
        self._transform_executor.shutdown(wait=False)
