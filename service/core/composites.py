"""Requests made of other requests: multi-crop, ensembles, and the fan-out of any composite
request over its images.

A multi-crop decodes an image once, at the scale its crop scheme needs, cuts the scheme's
crops (`service.core.crops`) and sends them to the model's batcher as one submission; the
probabilities are averaged. An ensemble is a composition of engines, not a model of its own:
the image is decoded once, at the scale the most demanding member needs, then each member
runs concurrently with its own preprocessing and batcher, and `service.core.ensemble`
combines their probabilities. A request with several images answers each on its own, all at
once. The configured ensembles are planned when the data plane is built, so that a broken
one (an unknown member, mixed label sets, wrong weights) stops the start instead of failing
its first request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar

import numpy as np
from PIL import Image

from model_store.repository import RANDOM_INIT
from service.core import metrics
from service.core.config import ServingConfig
from service.core.crops import check_crop_scheme, crop_tensors, decode_side
from service.core.engines import Engine, Engines
from service.core.ensemble import EnsemblePlan, combine, plan_ensemble
from service.core.errors import ServiceError
from service.core.pipeline import ImagePipeline
from service.core.postprocess import top_k
from service.core.requests import EnsembleRequest, MulticropRequest
from service.core.results import ENSEMBLE, EnsembleResult, MemberResult, MulticropResult
from service.core.runner import ModelRunner, ms, record_preparation

T = TypeVar("T")


async def each_image(images: Sequence[bytes], answer: Callable[[bytes], Awaitable[T]]
                     ) -> list[T]:
    """`answer` of every image, concurrently, in the images' order."""
    if len(images) == 1:  # the common case: no task to create
        return [await answer(images[0])]
    return list(await asyncio.gather(*(answer(image) for image in images)))


class Composites:
    def __init__(self, config: ServingConfig, engines: Engines, pipeline: ImagePipeline,
                 runner: ModelRunner) -> None:
        self.config = config
        self.engines = engines
        self.pipeline = pipeline
        self.runner = runner
        for name in config.ensembles:  # a broken one stops the start
            try:
                self.plan(EnsembleRequest(images=(), ensemble=name))
            except ServiceError as exc:
                raise ValueError(f"configured ensemble {name!r}: {exc.message}") from None

    # --- multi-crop ----------------------------------------------------------------------

    async def multicrop(self, request: MulticropRequest, engine: Engine
                        ) -> list[MulticropResult]:
        scheme = check_crop_scheme(request.crops)
        return await each_image(request.images, partial(self._multicrop, request, engine,
                                                        scheme))

    async def _multicrop(self, request: MulticropRequest, engine: Engine, scheme: int,
                         image: bytes) -> MulticropResult:
        started = time.perf_counter()
        timing: dict[str, float] = {}
        spec = engine.spec.input
        prepared = await self.pipeline.prepare(
            image, "image", decode_side(spec, scheme, request.crop_resize),
            partial(crop_tensors, spec=spec, scheme=scheme, resize=request.crop_resize),
            request.deadline)
        record_preparation(engine.spec.name, [prepared], timing)
        # One submit: the batcher runs a request's images together, so the crops are one batch.
        mean = (await self.runner.infer(engine, prepared.value, timing,
                                        request.deadline)).mean(axis=0)
        result = self.runner.results(engine, mean[None], request.top_k, timing, started)[0]
        return result.extended(MulticropResult, crops=scheme)

    # --- ensembles -----------------------------------------------------------------------

    def plan(self, request: EnsembleRequest) -> EnsemblePlan:
        """The members, weights and method `request` asks for, checked."""
        return plan_ensemble(self.engines.specs.label_set, self.config.ensembles,
                             models=request.models, ensemble=request.ensemble,
                             weights=request.weights, method=request.method,
                             max_members=self.config.max_ensemble_members)

    async def ensemble(self, request: EnsembleRequest) -> list[EnsembleResult]:
        scheme = check_crop_scheme(request.crops)
        plan = self.plan(request)
        engines = await asyncio.gather(*(self.engines.engine(m) for m in plan.members))
        return await each_image(request.images, partial(self._ensemble, request, plan,
                                                        engines, scheme))

    async def _ensemble(self, request: EnsembleRequest, plan: EnsemblePlan,
                        engines: list[Engine], scheme: int, image: bytes) -> EnsembleResult:
        started = time.perf_counter()
        timing: dict[str, float] = {}
        name = plan.name or ENSEMBLE
        # Decoded once, at the scale the most demanding member's crops need.
        side = max(decode_side(e.spec.input, scheme) for e in engines)
        decoded = await self.pipeline.prepare(image, "image", side, deadline=request.deadline)
        record_preparation(name, [decoded], timing)
        del timing["preprocess"]  # each member reports its own
        members = await asyncio.gather(*(
            self._member(e, decoded.value, scheme, request, started) for e in engines))
        t0 = time.perf_counter()
        combined = combine([p for p, _ in members], plan.weights, plan.method)
        predictions = top_k(combined, request.top_k, engines[0].labels)
        timing["combine"] = ms(time.perf_counter() - t0)
        timing["total"] = ms(time.perf_counter() - started)
        random_init = [e.spec.name for e in engines if e.weights_status == RANDOM_INIT]
        return EnsembleResult(
            model=name, ensemble=plan.name, models=plan.members, method=plan.method,
            member_weights=plan.weights, crops=scheme,
            weights=RANDOM_INIT if random_init else engines[0].weights_status,
            warning=(f"members {', '.join(random_init)} have random-init weights: the "
                     "combined predictions are meaningless") if random_init else None,
            predictions=predictions, members=tuple(m for _, m in members), timing_ms=timing)

    async def _member(self, engine: Engine, image: Image.Image, scheme: int,
                      request: EnsembleRequest, request_started: float
                      ) -> tuple[np.ndarray, MemberResult]:
        """A member's probabilities, averaged over the scheme's crops, and its result."""
        started = time.perf_counter()
        timing: dict[str, float] = {}
        batch, seconds = await self.pipeline.transform(
            image, partial(crop_tensors, spec=engine.spec.input, scheme=scheme))
        metrics.STAGE_LATENCY.labels(engine.spec.name, "preprocess").observe(seconds)
        timing["preprocess"] = ms(seconds)
        # One submit: the batcher runs a request's images together, so the crops are one batch.
        probabilities = (await self.runner.infer(engine, batch, timing,
                                                 request.deadline)).mean(axis=0)
        result = self.runner.results(engine, probabilities[None], request.top_k, timing,
                                     started)[0]
        return probabilities, result.extended(
            MemberResult, started_ms=ms(started - request_started),
            latency_ms=timing["total"])
