"""The data plane: the one object every protocol adapter calls (KServe's idea of a DataPlane).

It is built from a configuration, a model repository and a backend factory (BentoML's store
and ONNX Runtime in production; a folder and a fake backend in the unit tests), and assembles
the modules that do the work: `Engines` (load, verify, warm up, evict), the `ImagePipeline`
(decode and preprocess with admission), the `ModelRunner` (one model's request path),
`Composites` (multi-crop, ensembles, fan-out over images), `FamilySelection` and the
`Catalogue` (descriptions, index, readiness, signatures). Its methods take the typed
requests of `service.core.requests` and give the typed results of `service.core.results`;
REST and gRPC call the same instance in the same process, so batching and metrics are
shared between them.

`observe` counts and times a request under one metric-label rule for every protocol: the
model that ran (the chosen variant of a selection, a configured ensemble's name, "ensemble"
for members given in the request); before that is known, what the request named, and
"unknown" for anything that is not a registry model, a configured ensemble or one of the
pseudo-models, so that clients cannot invent label values.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from model_store.repository import BentoModelRepository, ModelRepository
from model_store.specs import ModelSpec
from service.core import gpu_decode, metrics
from service.core.backends import backend_for
from service.core.catalogue import Catalogue, IndexEntry, ModelStatus, Signature
from service.core.composites import Composites
from service.core.config import ServingConfig, load_config
from service.core.engines import BackendFactory, Engines
from service.core.errors import DeviceUnavailable, InvalidArgument, ServiceError
from service.core.pipeline import ImagePipeline
from service.core.requests import (
    ClassifyRequest,
    EmbedRequest,
    EnsembleRequest,
    FrontierRequest,
    MulticropRequest,
    PixelsRequest,
    Request,
    SelectRequest,
)
from service.core.results import (
    ENSEMBLE,
    Classification,
    Embedding,
    EnsembleResult,
    MulticropResult,
    Result,
    SelectResult,
)
from service.core.runner import ModelRunner
from service.core.selection import FamilySelection
from service.core.stored import StoreIndex

log = logging.getLogger("convzoo.core")

SELECT = "select"  # the label of a selection before a variant is chosen
UNKNOWN = "unknown"


class Observation:
    """The metric label of one request in flight: what it asked for, then what ran."""

    def __init__(self, label: str) -> None:
        self.label = label

    def ran(self, results: Sequence[Result]) -> None:
        if results:
            self.label = results[0].model


class DataPlane:
    def __init__(self, config: ServingConfig | None = None,
                 repository: ModelRepository | None = None,
                 make_backend: BackendFactory = backend_for) -> None:
        self.config = config or load_config()
        self.store_index = StoreIndex(repository or BentoModelRepository())
        self.engines = Engines(self.config, self.store_index.repository, self.store_index,
                               make_backend)
        self.pipeline = ImagePipeline(self.config)
        self.runner = ModelRunner(self.pipeline)
        self.composites = Composites(self.config, self.engines, self.pipeline, self.runner)
        self.selection = FamilySelection(self.engines, self.runner, self.store_index)
        self.catalogue = Catalogue(self.config, self.engines, self.store_index)
        self.started = False

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        # The store's user models join the listing (and the models served) from the start.
        await asyncio.to_thread(self.engines.specs.refresh)
        for name in self.config.startup_models:
            try:
                await self.engines.engine(name)
            except DeviceUnavailable:
                raise  # a GPU configured and not usable: a start-up error (docs/gpu.md)
            except ServiceError as exc:
                log.error("start-up model %s failed to load: %s", name, exc.message)
        if self.config.profile_families_at_startup:
            await self.selection.profile_startup_families(self.config.startup_models)
        self.runner.gpu_jpeg = gpu_decode.for_config(
            self.config.decode, self.config.gpu_decode_min_pixels, self.engines.devices())
        self.engines.started = self.started = True

    @property
    def ready(self) -> bool:
        """Every start-up model loaded. A model that failed keeps readiness false (so an
        orchestrator routes elsewhere) while the loaded ones go on answering requests."""
        return self.started and all(self.engines.get(m) for m in self.config.startup_models)

    async def close(self) -> None:
        await self.engines.close()
        self.pipeline.close()
        self.selection.close()

    # --- requests ------------------------------------------------------------------------

    async def classify(self, request: ClassifyRequest) -> list[Classification]:
        """One result per image, the images run through the model as one batch."""
        self._check_top_k(request.top_k)
        self._check_image_count(len(request.images))
        started = time.perf_counter()
        engine = await self.engines.engine(request.model or self.config.default_model)
        return await self.runner.classify(engine, request.images, request.top_k,
                                          request.deadline, started)

    async def embed(self, request: EmbedRequest) -> list[Embedding]:
        """Each image's features, the images run as one batch through the model's batcher,
        which classify requests for the same model share."""
        self._check_image_count(len(request.images))
        started = time.perf_counter()
        engine = await self.engines.engine(request.model or self.config.default_model)
        return await self.runner.embed(engine, request.images, request.normalize,
                                       request.deadline, started)

    async def classify_pixels(self, request: PixelsRequest) -> list[Classification]:
        self._check_top_k(request.top_k)
        started = time.perf_counter()
        engine = await self.engines.engine(request.model or self.config.default_model)
        return await self.runner.classify_pixels(engine, request.pixels, request.top_k,
                                                 request.deadline, started,
                                                 self._check_image_count)

    async def multicrop(self, request: MulticropRequest) -> list[MulticropResult]:
        self._check_top_k(request.top_k)
        self._check_image_count(len(request.images))
        engine = await self.engines.engine(request.model or self.config.default_model)
        return await self.composites.multicrop(request, engine)

    async def ensemble(self, request: EnsembleRequest) -> list[EnsembleResult]:
        self._check_top_k(request.top_k)
        self._check_image_count(len(request.images))
        return await self.composites.ensemble(request)

    async def select(self, request: SelectRequest) -> list[SelectResult]:
        self._check_top_k(request.top_k)
        self._check_image_count(len(request.images))
        return await self.selection.select(request)

    async def answer(self, request: Request) -> Sequence[Result]:
        """Any request, by its kind: what an OIP ModelInfer asks for is one of them
        (service.oip_codec.infer_call)."""
        for kind, method in ((ClassifyRequest, self.classify), (EmbedRequest, self.embed),
                             (PixelsRequest, self.classify_pixels),
                             (MulticropRequest, self.multicrop),
                             (EnsembleRequest, self.ensemble), (SelectRequest, self.select)):
            if isinstance(request, kind):
                return await method(request)
        raise TypeError(f"not a data-plane request: {type(request).__name__}")

    async def frontier(self, request: FrontierRequest) -> dict[str, Any]:
        return await self.selection.frontier(request)

    def _check_top_k(self, k: int) -> None:
        if not 1 <= k <= self.config.max_top_k:
            raise InvalidArgument(f"top_k must be between 1 and {self.config.max_top_k}, got {k}")

    def _check_image_count(self, count: int) -> None:
        if count == 0:
            raise InvalidArgument("no image given: send at least one image")
        if count > self.config.max_images_per_request:
            raise InvalidArgument(f"{count} images in one request; the limit is "
                                  f"{self.config.max_images_per_request}")

    # --- the catalogue -------------------------------------------------------------------

    def spec(self, name: str) -> ModelSpec:
        """`name`'s spec (a registry model's or a user model's), or ModelNotFound."""
        return self.engines.specs.spec(name)

    def model_status(self, name: str) -> ModelStatus:
        return self.catalogue.status(name)

    def models(self) -> list[ModelStatus]:
        return self.catalogue.statuses()

    def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        return self.catalogue.index(ready_only)

    def model_ready(self, name: str) -> bool:
        return self.catalogue.is_loaded(name)

    def signature(self, name: str | None) -> Signature:
        return self.catalogue.signature(name)

    # --- metrics -------------------------------------------------------------------------

    def metric_label(self, requested: str | None) -> str:
        """The label of a request for `requested` (None: the default model)."""
        label = requested or self.config.default_model
        if (self.engines.specs.is_known(label) or label in self.config.ensembles
                or label in (ENSEMBLE, SELECT)):
            return label
        return UNKNOWN

    @asynccontextmanager
    async def observe(self, endpoint: str, requested: str | None
                      ) -> AsyncIterator[Observation]:
        """Count a request's outcome and time it, whatever the protocol; the adapter says
        what ran (`Observation.ran`) once it knows."""
        observation = Observation(self.metric_label(requested))
        started = time.perf_counter()
        outcome = "ok"
        try:
            yield observation
        except ServiceError as exc:
            outcome = exc.code
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception:
            outcome = "internal"
            raise
        finally:
            label = self.metric_label(observation.label)
            metrics.REQUESTS.labels(label, endpoint, outcome).inc()
            metrics.REQUEST_LATENCY.labels(label, endpoint).observe(time.perf_counter() - started)
