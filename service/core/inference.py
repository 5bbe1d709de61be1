"""The inference core that every protocol adapter calls.

It owns the loaded models (`Engine`: stored model + backend + batcher), loads the configured
ones at start-up, loads others on first use, evicts the least recently used idle ones under a
memory budget, and runs the request path: decode -> preprocess (worker threads, overlapping
inference) -> the model's batcher -> softmax/top-k. REST and gRPC call the same instance in
the same process, so batching and metrics are shared between them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from PIL import Image

from model_store import registry, repository
from model_store.registry import UnknownModel
from model_store.specs import ModelSpec
from model_store.transforms import preprocess
from model_store.weights import sha256_of
from service.core import gpu_decode, metrics
from service.core.arguments import integer_argument
from service.core.backends import Backend, backend_for
from service.core.batcher import Batcher, BatchResult
from service.core.config import ServingConfig, load_config, usable_cores
from service.core.crops import check_crop_scheme, crop_tensors, decode_side, decode_sides
from service.core.ensemble import DEFAULT_MAX_MEMBERS, combine, plan_ensemble
from service.core.errors import (
    DeviceUnavailable,
    InvalidArgument,
    ModelNotFound,
    NotReady,
    ServiceError,
)
from service.core.layout import LayoutChoice, choose_layout
from service.core.loading import LoadRunner
from service.core.pipeline import ImagePipeline, Prepared
from service.core.postprocess import softmax, top_k
from service.core.selection import (
    Variant,
    VariantSelector,
    check_flag,
    check_selection_arguments,
    expected_queue_wait_ms,
)

log = logging.getLogger("convzoo.core")

# Selection: profile repetitions (the median is kept) at batch 1, which decides the ranking
# and is cheap, and at the max batch, which is slow.
PROFILE_REPEATS_SINGLE = 5
PROFILE_REPEATS_MAX_BATCH = 3

STORE_STATUS_TTL_S = 5.0
RANDOM_INIT_WARNING = (
    "{name} has random-init weights (no real weights were imported): its predictions are "
    "meaningless; use it for latency profiling only"
)


@dataclass
class Engine:
    spec: ModelSpec
    stored: repository.StoredModel
    backend: Backend
    batcher: Batcher
    memory_mb: float
    load_seconds: float
    layout: LayoutChoice

    @property
    def weights_status(self) -> str:
        return self.stored.weights_status


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


class InferenceCore:
    def __init__(self, config: ServingConfig | None = None):
        self.config = config or load_config()
        self.engines: dict[str, Engine] = {}
        self.load_errors: dict[str, str] = {}
        self._loading: dict[str, asyncio.Task] = {}
        # Loads of different models run side by side, each bounded in time (a hung disk).
        self._loads = LoadRunner(self.config.model_load_concurrency,
                                 self.config.model_load_timeout_s)
        # Selection's profiling runs, one at a time so that their timings do not compete.
        self._profile_executor = ThreadPoolExecutor(1, thread_name_prefix="model-profile")
        # Decoding and preprocessing overlap with inference on threads of their own.
        self.pipeline = ImagePipeline(self.config)
        self.started = False
        self._stored_cache: tuple[float, dict[str, str]] | None = None
        self.gpu_jpeg: gpu_decode.GpuJpegPreprocessor | None = None  # set by start()

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        for name in self.config.startup_models:
            try:
                await self.engine(name)
            except DeviceUnavailable:
                raise  # a GPU configured and not usable: a start-up error (docs/gpu.md)
            except ServiceError as exc:
                log.error("start-up model %s failed to load: %s", name, exc.message)
        if self.config.profile_families_at_startup:
            await self.profile_startup_families()
        self.gpu_jpeg = gpu_decode.for_config(
            self.config.decode, self.config.gpu_decode_min_pixels,
            [engine.backend.device for engine in self.engines.values()])
        self.started = True

    @property
    def ready(self) -> bool:
        """Every start-up model loaded. A model that failed keeps /readyz false (so an
        orchestrator routes elsewhere) while the loaded ones go on answering requests."""
        return self.started and all(m in self.engines for m in self.config.startup_models)

    async def close(self) -> None:
        for engine in list(self.engines.values()):
            await engine.batcher.close()
        self.engines.clear()
        self.pipeline.close()
        self._profile_executor.shutdown(wait=False)

    def spec(self, name: str) -> ModelSpec:
        try:
            return registry.get(name)
        except UnknownModel as exc:
            raise ModelNotFound(str(exc), model=name,
                                valid_models=sorted(registry.all_specs())) from None

    async def engine(self, name: str) -> Engine:
        """The loaded engine for `name`, loading it (once, however many ask) if needed."""
        if name in self.engines:
            return self.engines[name]
        spec = self.spec(name)
        if name not in self.config.startup_models and not self.config.lazy_load and self.started:
            raise NotReady(f"model {name} is not loaded and lazy loading is off")
        task = self._loading.get(name)
        if task is None:
            task = asyncio.ensure_future(self._load(spec))
            self._loading[name] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._loading.pop(name, None)

    async def _load(self, spec: ModelSpec) -> Engine:
        started = time.perf_counter()
        try:
            stored, backend, layout = await self._loads.run(
                spec.name, functools.partial(self._load_blocking, spec))
        except ServiceError as exc:
            self.load_errors[spec.name] = exc.message
            metrics.MODEL_READY.labels(spec.name).set(0)
            raise
        except Exception as exc:  # a broken file must not take the service down
            # The details (often a file's path) go to the log only, not to clients.
            log.error("model %s failed to load", spec.name, exc_info=exc)
            message = (f"model {spec.name} failed to load ({type(exc).__name__}); see the "
                       "server log")
            self.load_errors[spec.name] = message
            metrics.MODEL_READY.labels(spec.name).set(0)
            raise NotReady(message, model=spec.name) from None
        batching = self.config.batching_for(spec.name)
        engine = Engine(
            spec=spec, stored=stored, backend=backend,
            batcher=Batcher(spec.name, backend.run, max_batch_size=batching.max_batch_size,
                            max_delay_ms=batching.max_delay_ms, max_queue=batching.max_queue,
                            instances=layout.instances),
            memory_mb=stored.onnx_path.stat().st_size / 2**20 * 2 + 32,
            load_seconds=time.perf_counter() - started,
            layout=layout,
        )
        await self._evict_for(engine.memory_mb)
        self.engines[spec.name] = engine
        self.load_errors.pop(spec.name, None)
        metrics.MODEL_LOAD_SECONDS.labels(spec.name).observe(engine.load_seconds)
        metrics.MODEL_READY.labels(spec.name).set(1)
        metrics.MODELS_LOADED.set(len(self.engines))
        log.info("loaded %s (%s, %s) in %.2fs; %d instance(s) x %d thread(s): %s", spec.name,
                 backend.name, ",".join(backend.providers), engine.load_seconds,
                 layout.instances, layout.threads, layout.reason)
        return engine

    def _load_blocking(self, spec: ModelSpec
                       ) -> tuple[repository.StoredModel, Backend, LayoutChoice]:
        try:
            stored = repository.find(spec.name)
        except repository.BrokenStoreEntry as exc:  # the path stays in the log (the chained cause)
            log.error("model %s: broken store entry", spec.name, exc_info=exc)
            raise NotReady(f"{exc}; re-import it with `python -m model_store pull "
                           f"{spec.name}`", model=spec.name) from None
        if stored is None:
            raise ModelNotFound(
                f"model {spec.name} is in the registry but has no weights in the model store; "
                f"import them with `python -m model_store pull {spec.name}` (or `import "
                f"{spec.name} --from-file PATH`)", model=spec.name,
                served_models=sorted(self.stored_statuses()))
        if stored.weights_status == repository.RANDOM_INIT and not self.config.allow_random_init:
            raise ModelNotFound(f"model {spec.name} only has random-init weights, which this "
                                "service is configured not to serve", model=spec.name)
        self._check_files(stored)
        backend, layout = self._build_backend(spec, stored)
        # Warm-up: the first runs allocate buffers and pick kernels; keep that off requests.
        batching = self.config.batching_for(spec.name)
        for size in (1, batching.max_batch_size):
            backend.run(np.zeros((size, spec.input.channels, spec.input.size, spec.input.size),
                                 np.float32))
        return stored, backend, layout

    def _build_backend(self, spec: ModelSpec, stored: repository.StoredModel
                       ) -> tuple[Backend, LayoutChoice]:
        """The model's backend, with its instance layout configured or chosen by measurement
        (service/core/layout.py)."""
        config, batching = self.config, self.config.batching_for(spec.name)

        def make(threads: int) -> Backend:
            return backend_for(config, stored, spec.name, threads)

        if batching.instances != "auto":
            threads = config.threads_for(spec.name)
            return make(threads), LayoutChoice(batching.instances, threads,
                                               batching.max_batch_size, reason="configured")
        if config.threads:
            return make(config.threads), LayoutChoice(
                1, config.threads, batching.max_batch_size,
                reason="one instance: intra-op threads are configured")
        backends: dict[int, Backend] = {}  # by intra-op threads: one per candidate layout

        def runner(threads: int):
            if threads not in backends:
                backends[threads] = make(threads)
            return backends[threads].run

        cores = usable_cores()
        runner(cores)
        whole = backends[cores]
        if whole.name != "onnxruntime" or whole.device != "cpu":
            return whole, LayoutChoice(1, cores, batching.max_batch_size, reason=(
                f"one instance: layouts are measured for ONNX Runtime on CPU, not "
                f"{whole.name} on {whole.device}"))
        # Noise shaped like normalised photos: the work does not depend on the values, but
        # zeros could meet shortcuts that real inputs never take.
        batch = np.random.default_rng(0).standard_normal(
            (batching.max_batch_size, spec.input.channels, spec.input.size, spec.input.size),
            dtype=np.float32)
        choice, _ = choose_layout(runner, batch, cores)
        return backends[choice.threads], choice

    def _check_files(self, stored: repository.StoredModel) -> None:
        """Refuse a stored model whose files no longer match the digests recorded at import
        (a corrupt disk, a truncated copy, a hand-edited file)."""
        needed = ["model.onnx"] + (["weights.safetensors"] if self.config.backend == "pytorch"
                                   else [])
        for file_name in needed:
            expected = stored.record.get("files", {}).get(file_name)
            path = stored.path / file_name
            actual = sha256_of(path) if path.exists() else "missing"
            if actual != expected:
                raise NotReady(
                    f"model {stored.record['name']}: stored {file_name} is corrupt (sha256 "
                    f"{actual[:16]}, recorded {str(expected)[:16]}); re-import it with "
                    f"`python -m model_store pull {stored.record['name']}`",
                    model=stored.record["name"])

    async def _evict_for(self, needed_mb: float) -> None:
        def used() -> float:
            return sum(e.memory_mb for e in self.engines.values())

        while self.engines and used() + needed_mb > self.config.memory_budget_mb:
            idle = [e for e in self.engines.values()
                    if e.batcher.idle and e.spec.name != self.config.default_model]
            if not idle:
                return  # everything is busy: go over budget rather than fail requests
            victim = min(idle, key=lambda e: e.batcher.last_used)
            log.info("evicting %s (memory budget %.0f MB)", victim.spec.name,
                     self.config.memory_budget_mb)
            del self.engines[victim.spec.name]
            metrics.MODEL_READY.labels(victim.spec.name).set(0)
            metrics.MODELS_LOADED.set(len(self.engines))
            await victim.batcher.close()

    # --- request path --------------------------------------------------------------------

    def check_top_k(self, value: Any) -> int:
        k = integer_argument(value, "top_k")
        if not 1 <= k <= self.config.max_top_k:
            raise InvalidArgument(f"top_k must be between 1 and {self.config.max_top_k}, got {k}")
        return k

    def check_image_count(self, count: int) -> None:
        if count == 0:
            raise InvalidArgument("no image given: send at least one image")
        if count > self.config.max_images_per_request:
            raise InvalidArgument(f"{count} images in one request; the limit is "
                                  f"{self.config.max_images_per_request}")

    async def preprocess_images(self, images: list[bytes], spec: ModelSpec,
                                timing: dict[str, float], deadline: float | None = None
                                ) -> np.ndarray:
        """The images decoded at the model's resize and preprocessed, as one batch."""
        if self.gpu_jpeg is not None:  # large JPEGs through nvJPEG, the rest on the CPU
            batch, decode_s, prep_s = await self.pipeline.run_blocking(
                self.gpu_jpeg.preprocess, images, spec.input, self.pipeline.limits)
            self._record_preparation(spec.name, [Prepared(batch, 0.0, decode_s, prep_s)],
                                     timing)
            return batch
        prepared = await self.pipeline.prepare_all(
            images, spec.input.resize, partial(preprocess, spec=spec.input), deadline)
        self._record_preparation(spec.name, prepared, timing)
        if len(prepared) == 1:
            return prepared[0].value[None]  # a view: no copy for the common single image
        return np.stack([p.value for p in prepared])

    @staticmethod
    def _record_preparation(label: str, prepared: list[Prepared], timing: dict[str, float]
                            ) -> None:
        """Stage times of the slowest image (they run side by side) into metrics and timing."""
        for stage, seconds in (("decode_wait", max(p.wait_s for p in prepared)),
                               ("decode", max(p.decode_s for p in prepared)),
                               ("preprocess", max(p.transform_s for p in prepared))):
            metrics.STAGE_LATENCY.labels(label, stage).observe(seconds)
            timing[stage] = _ms(seconds)

    async def infer(self, engine: Engine, batch: np.ndarray, timing: dict[str, float],
                    deadline: float | None = None) -> np.ndarray:
        """Probabilities (n, classes) for a preprocessed batch through the model's batcher."""
        result: BatchResult = await engine.batcher.submit(batch, deadline)
        timing["queue"] = round(result.queue_ms, 3)
        timing["infer"] = round(result.infer_ms, 3)
        timing["batch_size"] = result.batch_size
        return softmax(result.logits.astype(np.float32))

    def describe_weights(self, engine: Engine, response: dict[str, Any]) -> dict[str, Any]:
        response["weights"] = engine.weights_status
        if engine.weights_status == repository.RANDOM_INIT:
            response["warning"] = RANDOM_INIT_WARNING.format(name=engine.spec.name)
        return response

    async def classify(self, model: str | None, images: list[bytes], k: Any = 5,
                       deadline: float | None = None) -> list[dict[str, Any]]:
        """One result per image: {"model", "weights", "predictions", "timing_ms"}."""
        name = model or self.config.default_model
        k = self.check_top_k(k)
        self.check_image_count(len(images))
        started = time.perf_counter()
        engine = await self.engine(name)
        timing: dict[str, float] = {}
        batch = await self.preprocess_images(images, engine.spec, timing, deadline)
        probabilities = await self.infer(engine, batch, timing, deadline)
        return self._results(engine, probabilities, k, timing, started)

    async def classify_pixels(self, model: str | None, pixels: np.ndarray, k: Any = 5,
                              deadline: float | None = None) -> list[dict[str, Any]]:
        """As `classify`, for tensors already preprocessed to the model's input shape."""
        name = model or self.config.default_model
        k = self.check_top_k(k)
        started = time.perf_counter()
        engine = await self.engine(name)
        expected = (engine.spec.input.channels, engine.spec.input.size, engine.spec.input.size)
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != expected:
            raise InvalidArgument(f"PIXELS for {name} must have shape [-1, {expected[0]}, "
                                  f"{expected[1]}, {expected[2]}], got {list(pixels.shape)}")
        self.check_image_count(len(pixels))
        if not np.isfinite(pixels).all():
            raise InvalidArgument("PIXELS contains NaN or infinite values")
        timing: dict[str, float] = {}
        probabilities = await self.infer(engine, pixels.astype(np.float32, copy=False), timing,
                                         deadline)
        return self._results(engine, probabilities, k, timing, started)

    def _results(self, engine: Engine, probabilities: np.ndarray, k: int,
                 timing: dict[str, float], started: float) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        predictions = [top_k(p, k, engine.spec.labels) for p in probabilities]
        post_s = time.perf_counter() - t0
        metrics.STAGE_LATENCY.labels(engine.spec.name, "postprocess").observe(post_s)
        timing["postprocess"] = _ms(post_s)
        timing["total"] = _ms(time.perf_counter() - started)
        return [self.describe_weights(engine, {"model": engine.spec.name,
                                               "predictions": preds,
                                               "timing_ms": dict(timing)})
                for preds in predictions]

    @asynccontextmanager
    async def observe(self, endpoint: str, model: str | None) -> AsyncIterator[None]:
        """Count a request's outcome and time it, whatever the protocol."""
        label = model or self.config.default_model
        if label not in registry.all_specs():
            label = "unknown"
        started = time.perf_counter()
        outcome = "ok"
        try:
            yield
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
            metrics.REQUESTS.labels(label, endpoint, outcome).inc()
            metrics.REQUEST_LATENCY.labels(label, endpoint).observe(time.perf_counter() - started)

    # --- metadata ------------------------------------------------------------------------

    def stored_entries(self) -> dict[str, repository.StoreEntry]:
        """Every stored variant's weights status (or broken, and why), re-read from BentoML's
        store at most every few seconds (reading it parses every stored model's model.yaml and
        convzoo.json)."""
        now = time.monotonic()
        if self._stored_cache is None or now - self._stored_cache[0] > STORE_STATUS_TTL_S:
            self._stored_cache = (now, repository.stored_entries())
        return self._stored_cache[1]

    def stored_statuses(self) -> dict[str, str]:
        return {name: entry.status for name, entry in self.stored_entries().items()}

    def model_info(self, name: str, stored: dict[str, repository.StoreEntry] | None = None
                   ) -> dict[str, Any]:
        spec = self.spec(name)
        engine = self.engines.get(name)
        entry = (self.stored_entries() if stored is None else stored).get(name)
        published = spec.published
        record = engine.stored.record if engine else {}
        return {
            "name": spec.name,
            "family": spec.family,
            "paper": spec.paper,
            "input": {"size": spec.input.size, "resize": spec.input.resize,
                      "interpolation": spec.input.interpolation, "mean": spec.input.mean,
                      "std": spec.input.std, "channels": spec.input.channels,
                      # The shorter side photos are decoded for, per crop scheme: what a
                      # client may shrink a photo to without changing the answer.
                      "decode_sides": decode_sides(spec.input)},
            "labels": spec.labels,
            "num_classes": spec.num_classes,
            "ladder": spec.ladder,
            "published": None if published is None else {
                "top1": published.top1, "top5": published.top5, "params_m": published.params_m,
                "mult_adds_m": published.mult_adds_m, "source": published.source},
            "weights": entry.status if entry else repository.MISSING,
            # What is wrong with a broken store entry (no filesystem paths).
            "store_error": entry.error if entry else None,
            "loaded": engine is not None,
            "ready": engine is not None,
            "load_error": self.load_errors.get(name),
            "backend": engine.backend.name if engine else None,
            "providers": list(engine.backend.providers) if engine else None,
            "layout": engine.layout.to_dict() if engine else None,
            # asked vs got: device, providers, precision, I/O binding, and why if less
            "execution": engine.backend.execution.to_dict() if engine else None,
            "computed": ({"params_m": record.get("params_m"),
                          "mult_adds_m": record.get("mult_adds_m")} if engine else None),
        }

    def models(self) -> list[dict[str, Any]]:
        stored = self.stored_entries()
        return [self.model_info(name, stored) for name in registry.all_specs()]

    # --- multi-crop and ensembles --------------------------------------------------------

    async def _crop_probabilities(self, engine: Engine, image: Image.Image, scheme: int,
                                  timing: dict[str, float], deadline: float | None
                                  ) -> np.ndarray:
        """The model's probabilities averaged over the scheme's crops of a decoded image."""
        batch, seconds = await self.pipeline.transform(
            image, partial(crop_tensors, spec=engine.spec.input, scheme=scheme))
        metrics.STAGE_LATENCY.labels(engine.spec.name, "preprocess").observe(seconds)
        timing["preprocess"] = _ms(seconds)
        # One submit: the batcher runs a request's images together, so the crops are one batch.
        return (await self.infer(engine, batch, timing, deadline)).mean(axis=0)

    async def multicrop(self, model: str | None, image: bytes, crops: Any = 10, k: Any = 5,
                        deadline: float | None = None, crop_resize: int | None = None
                        ) -> dict[str, Any]:
        """{"model", "weights", "crops", "predictions", "timing_ms"}: mean over the crops."""
        name = model or self.config.default_model
        k = self.check_top_k(k)
        scheme = check_crop_scheme(crops)
        started = time.perf_counter()
        engine = await self.engine(name)
        timing: dict[str, float] = {}
        spec = engine.spec.input
        prepared = await self.pipeline.prepare(
            image, "image", decode_side(spec, scheme, crop_resize),
            partial(crop_tensors, spec=spec, scheme=scheme, resize=crop_resize), deadline)
        self._record_preparation(name, [prepared], timing)
        # One submit: the batcher runs a request's images together, so the crops are one batch.
        mean = (await self.infer(engine, prepared.value, timing, deadline)).mean(axis=0)
        return {**self._results(engine, mean[None], k, timing, started)[0], "crops": scheme}

    async def _ensemble_member(self, engine: Engine, image: Image.Image, scheme: int, k: int,
                               request_started: float, deadline: float | None
                               ) -> tuple[np.ndarray, dict[str, Any]]:
        started = time.perf_counter()
        timing: dict[str, float] = {}
        probabilities = await self._crop_probabilities(engine, image, scheme, timing, deadline)
        result = self._results(engine, probabilities[None], k, timing, started)[0]
        result["started_ms"] = _ms(started - request_started)
        result["latency_ms"] = timing["total"]
        return probabilities, result

    async def ensemble(self, image: bytes, models: list[str] | None = None,
                       ensemble: str | None = None, weights: list[Any] | None = None,
                       method: str | None = None, k: Any = 5, crops: Any = 1,
                       deadline: float | None = None) -> dict[str, Any]:
        """Members run concurrently, each with its own preprocessing and batcher; combined.

        `method` None means the named ensemble's method, else "mean".
        """
        k = self.check_top_k(k)
        scheme = check_crop_scheme(crops)
        plan = plan_ensemble(
            lambda m: self.spec(m).labels, self.config.ensembles, models=models,
            ensemble=ensemble, weights=weights, method=method,
            max_members=getattr(self.config, "max_ensemble_members", DEFAULT_MAX_MEMBERS))
        started = time.perf_counter()
        engines = await asyncio.gather(*(self.engine(m) for m in plan.members))
        timing: dict[str, float] = {}
        # Decoded once, at the scale the most demanding member's crops need.
        side = max(decode_side(e.spec.input, scheme) for e in engines)
        decoded = await self.pipeline.prepare(image, "image", side, deadline=deadline)
        self._record_preparation("ensemble", [decoded], timing)
        del timing["preprocess"]  # each member reports its own
        members = await asyncio.gather(*(self._ensemble_member(e, decoded.value, scheme, k,
                                                               started, deadline)
                                         for e in engines))
        t0 = time.perf_counter()
        combined = combine([p for p, _ in members], plan.weights, plan.method)
        predictions = top_k(combined, k, engines[0].spec.labels)
        timing["combine"] = _ms(time.perf_counter() - t0)
        timing["total"] = _ms(time.perf_counter() - started)
        random_init = [e.spec.name for e in engines if e.weights_status == repository.RANDOM_INIT]
        response: dict[str, Any] = {
            "ensemble": plan.name, "models": list(plan.members), "method": plan.method,
            "member_weights": list(plan.weights), "crops": scheme,
            "weights": repository.RANDOM_INIT if random_init else engines[0].weights_status,
            "predictions": predictions, "members": [m for _, m in members], "timing_ms": timing}
        if random_init:
            response["warning"] = (f"members {', '.join(random_init)} have random-init "
                                   "weights: the combined predictions are meaningless")
        return response

    # --- accuracy/latency selection within a family (issue 6) ----------------------------

    @property
    def selector(self) -> VariantSelector:
        """Latency state and remembered choices of the selector, created on first use."""
        if getattr(self, "_selector", None) is None:
            self._selector = VariantSelector()
            self._profiling: dict[str, asyncio.Task] = {}
            # Requests sent to a variant that are still decoding: not yet in its batcher's
            # queue, but ahead of anyone choosing now (without them, concurrent choosers
            # would all see an empty queue and pile onto the same variant).
            self._preparing: Counter[str] = Counter()
        return self._selector

    async def profile_startup_families(self) -> None:
        """Load and profile, before /readyz turns ready, every variant with real weights in
        the families of the start-up models that /select can rank (a published top-1), so
        that no request waits for a profile there (issue 18: the first /select took 4.7 s)."""
        families = dict.fromkeys(self.spec(name).family for name in self.config.startup_models
                                 if name in registry.all_specs())
        for family in families:
            if not any(spec.published for spec in registry.family(family)):
                continue
            started = time.perf_counter()
            rows = await self.selection_table(family)
            profiled = ", ".join(f"{v.name} {v.service_ms:.1f} ms" for v in rows
                                 if v.service_ms is not None)
            log.info("profiled %s for /select in %.1fs (batch 1: %s)", family,
                     time.perf_counter() - started, profiled or "no variant with real weights")

    def _family_specs(self, family: Any) -> list[ModelSpec]:
        specs = registry.family(family) if isinstance(family, str) else []
        if not specs:
            families = sorted({s.family for s in registry.all_specs().values()})
            what = f"unknown family {family!r}" if family else "no family given"
            raise InvalidArgument(f"{what}; families: {', '.join(families)}",
                                  valid_families=families)
        return specs

    async def _profile(self, engine: Engine) -> None:
        """Median backend time on zero batches of size 1 and the max batch, once per variant."""
        name = engine.spec.name
        if name not in self._profiling:
            self._profiling[name] = asyncio.ensure_future(self._run_profile(engine))
        try:
            await asyncio.shield(self._profiling[name])
        except Exception:
            self._profiling.pop(name, None)  # let a later request try again
            raise

    async def _run_profile(self, engine: Engine) -> None:
        def run() -> dict[int, float]:
            spec, medians = engine.spec, {}
            for size, repeats in ((1, PROFILE_REPEATS_SINGLE),
                                  (engine.batcher.max_batch_size, PROFILE_REPEATS_MAX_BATCH)):
                zeros = np.zeros((size, spec.input.channels, spec.input.size, spec.input.size),
                                 np.float32)
                runs = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    engine.backend.run(zeros)
                    runs.append((time.perf_counter() - t0) * 1000.0)
                medians[size] = statistics.median(runs)
            return medians

        medians = await asyncio.get_running_loop().run_in_executor(self._profile_executor, run)
        for size, median_ms in medians.items():
            self.selector.service_time(engine.spec.name).record_profile(size, median_ms)

    def _queue_wait_ms(self, engine: Engine, ahead: int) -> float:
        batcher = engine.batcher
        recent = list(batcher.recent_batch_ms)[-8:]
        batch_ms = (statistics.fmean(recent) if recent else
                    self.selector.service_time(engine.spec.name).estimate_ms() or 0.0)
        return expected_queue_wait_ms(ahead, batcher.in_flight, batcher.max_batch_size,
                                      batch_ms, batcher.max_delay * 1e3, batcher.instances)

    async def selection_table(self, family: Any, allow_untrained: bool = False,
                              measure_untrained: bool = False) -> list[Variant]:
        """The family's rows now, loading and profiling on demand the variants that may serve
        (those this call waited for are marked `profiled_for_request`)."""
        selector = self.selector
        specs = self._family_specs(family)
        stored = self.stored_statuses()
        rows = []
        for spec in specs:
            engine = self.engines.get(spec.name)
            weights = engine.weights_status if engine else stored.get(spec.name, repository.MISSING)
            wanted = weights == repository.PRETRAINED or (
                weights == repository.RANDOM_INIT and (allow_untrained or measure_untrained))
            note = ""
            waited = False  # for loading or profiling, on behalf of the request deciding
            try:
                if engine is None and wanted:
                    waited = True
                    engine = await self.engine(spec.name)
                if engine is not None and not selector.service_time(spec.name).profiled_ms:
                    waited = True
                    await self._profile(engine)
            except ServiceError as exc:  # one broken variant must not stop the others
                note = exc.message
            if engine is None:
                rows.append(selector.variant(spec, weights, note=note))
                continue
            # A request sent now runs with (or after) those queued or decoding ahead of it.
            ahead = engine.batcher.queued_images + self._preparing[spec.name]
            rows.append(selector.variant(
                spec, weights, self._queue_wait_ms(engine, ahead), note,
                batch_size=min(ahead + 1, engine.batcher.max_batch_size),
                profiled_for_request=waited))
        return rows

    async def select(self, image: bytes, family: str, latency_budget_ms: Any = None,
                     min_top1: Any = None, k: Any = 5, allow_untrained: Any = False,
                     deadline: float | None = None) -> dict[str, Any]:
        """Classify with the family's variant that best fits the budget and/or top-1 floor."""
        k = self.check_top_k(k)
        budget, floor, allow = check_selection_arguments(latency_budget_ms, min_top1,
                                                         allow_untrained)
        started = time.perf_counter()
        rows = await self.selection_table(family, allow)
        selection = self.selector.choose(family, rows, budget, floor, allow)
        name = selection.chosen.name
        self._preparing[name] += 1
        try:
            engine = await self.engine(name)
            timing: dict[str, float] = {"selection": _ms(time.perf_counter() - started)}
            # Decoded for the chosen variant alone: the smallest scale that covers its resize.
            batch = await self.preprocess_images([image], engine.spec, timing, deadline)
        finally:
            self._preparing[name] -= 1
        probabilities = await self.infer(engine, batch, timing, deadline)
        result = self._results(engine, probabilities, k, timing, started)[0]
        actual_ms = round(result["timing_ms"]["total"] - timing["selection"], 3)
        # Overhead: all but the batcher's part, waits for a preprocessing thread included.
        self.selector.observe(family, name, timing["infer"],
                              actual_ms - timing["queue"] - timing["infer"],
                              batch_size=int(timing["batch_size"]))
        return {**result, "selection": {**selection.to_dict(), "actual_latency_ms": actual_ms}}

    async def frontier(self, family: Any, allow_untrained: Any = False) -> dict[str, Any]:
        """The family's table, accuracy/latency frontier and choices in force, measured now.

        Random-init variants in the store are measured too (greyed in plots), never chosen.
        """
        allow = check_flag(allow_untrained, "allow_untrained")
        rows = await self.selection_table(family, allow, measure_untrained=True)
        return self.selector.describe(family, rows, allow)
