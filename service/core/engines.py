"""The loaded models: each an `Engine` (stored model + backend + batcher), loaded once.

`Engines` loads the configured models at start-up and others on first use (unless lazy
loading is off), registry variants and user models alike (`service.core.specs`), each load
off the event loop and bounded in time (`service.core.loading`): find the model in the
repository it was given, refuse random-init weights when configured to, verify the stored
files against the digests recorded at import, build the backend with its instance layout
(configured, or chosen by measurement: `service.core.layout`), warm it up at batch size 1
and at the max batch (unless the measurement already ran them), and give it a batcher. Under
a memory budget it evicts the least recently used idle engine. The repository and the backend
factory are constructor arguments: production passes BentoML's store and
`backends.backend_for`, the unit tests a folder of files and a backend that computes nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_store import registry
from model_store.repository import RANDOM_INIT, BrokenStoreEntry, ModelRepository, StoredModel
from model_store.specs import ModelSpec
from model_store.weights import sha256_of
from service.core import metrics
from service.core.backends import Backend, backend_for
from service.core.batcher import Batcher
from service.core.config import ServingConfig, usable_cores
from service.core.errors import ModelNotFound, NotReady, ServiceError
from service.core.layout import (
    BatchSizeChoice,
    LayoutChoice,
    choose_batch_size,
    choose_layout,
)
from service.core.loading import LoadRunner
from service.core.specs import ModelSpecs
from service.core.stored import StoreIndex

log = logging.getLogger("convzoo.core")

# (config, stored model, model name, intra-op threads or None) -> a backend
BackendFactory = Callable[[ServingConfig, StoredModel, str, "int | None"], Backend]


def noise_batch(spec: ModelSpec, size: int) -> np.ndarray:
    """A batch shaped like normalised photos, to time a model on: the work does not depend on
    the values, but zeros could meet shortcuts that real inputs never take."""
    return np.random.default_rng(0).standard_normal(
        (size, spec.input.channels, spec.input.size, spec.input.size), dtype=np.float32)


@dataclass
class Engine:
    spec: ModelSpec
    stored: StoredModel
    backend: Backend
    batcher: Batcher
    memory_mb: float
    load_seconds: float
    layout: LayoutChoice
    labels: tuple[str, ...]  # the class name of each output, in order

    @property
    def weights_status(self) -> str:
        return self.stored.weights_status


class Engines:
    def __init__(self, config: ServingConfig, repository: ModelRepository,
                 store_index: StoreIndex, make_backend: BackendFactory = backend_for,
                 file_digest: Callable[[Path], str] = sha256_of) -> None:
        self.config = config
        self.repository = repository
        self.store_index = store_index
        self.make_backend = make_backend
        self.file_digest = file_digest
        self.specs = ModelSpecs(repository)
        self.loaded: dict[str, Engine] = {}
        self.load_errors: dict[str, str] = {}
        # Set once start-up has loaded the configured models: with lazy loading off, no
        # other model loads after that.
        self.started = False
        self._loading: dict[str, asyncio.Task] = {}
        # Loads of different models run side by side, each bounded in time (a hung disk).
        self._loads = LoadRunner(config.model_load_concurrency, config.model_load_timeout_s)

    def get(self, name: str) -> Engine | None:
        """The engine of `name` if it is loaded now."""
        return self.loaded.get(name)

    def devices(self) -> list[str]:
        return [engine.backend.device for engine in self.loaded.values()]

    async def engine(self, name: str) -> Engine:
        """The loaded engine for `name`, loading it (once, however many ask) if needed."""
        if name in self.loaded:
            return self.loaded[name]
        spec = self.specs.spec(name)
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

    async def close(self) -> None:
        for engine in list(self.loaded.values()):
            await engine.batcher.close()
        self.loaded.clear()

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
            batcher=Batcher(spec.name, backend.run_outputs,
                            max_batch_size=layout.preferred_batch_size,
                            max_delay_ms=batching.max_delay_ms, max_queue=batching.max_queue,
                            instances=layout.instances),
            memory_mb=stored.onnx_path.stat().st_size / 2**20 * 2 + 32,
            load_seconds=time.perf_counter() - started,
            layout=layout,
            labels=self.specs.label_names(spec.name),
        )
        await self._evict_for(engine.memory_mb)
        self.loaded[spec.name] = engine
        self.load_errors.pop(spec.name, None)
        metrics.MODEL_LOAD_SECONDS.labels(spec.name).observe(engine.load_seconds)
        metrics.MODEL_READY.labels(spec.name).set(1)
        metrics.MODELS_LOADED.set(len(self.loaded))
        log.info("loaded %s (%s, %s) in %.2fs; %d instance(s) x %d thread(s): %s; %s",
                 spec.name, backend.name, ",".join(backend.providers), engine.load_seconds,
                 layout.instances, layout.threads, layout.reason,
                 layout.preferred_batch.reason if layout.preferred_batch
                 else f"batches of up to {layout.batch_size}")
        return engine

    def _load_blocking(self, spec: ModelSpec) -> tuple[StoredModel, Backend, LayoutChoice]:
        try:
            stored = (self.repository.find(spec.name) if spec.name in registry.all_specs()
                      else self.repository.find_user_model(spec.name))
        except BrokenStoreEntry as exc:  # the path stays in the log (the chained cause)
            log.error("model %s: broken store entry", spec.name, exc_info=exc)
            raise NotReady(f"{exc}; re-import it with `python -m model_store pull "
                           f"{spec.name}`", model=spec.name) from None
        if stored is None:
            raise ModelNotFound(
                f"model {spec.name} is in the registry but has no weights in the model store; "
                f"import them with `python -m model_store pull {spec.name}` (or `import "
                f"{spec.name} --from-file PATH`)", model=spec.name,
                served_models=sorted(self.store_index.statuses()))
        if stored.weights_status == RANDOM_INIT and not self.config.allow_random_init:
            raise ModelNotFound(f"model {spec.name} only has random-init weights, which this "
                                "service is configured not to serve", model=spec.name)
        self._check_files(stored)
        backend, layout = self._build_backend(spec, stored)
        # Warm-up: the first runs at a batch size allocate buffers and pick kernels; keep that
        # off requests. A size that a start-up measurement ran through this backend is warm.
        batching = self.config.batching_for(spec.name)
        for size in (1, batching.max_batch_size):
            if size not in layout.batch_sizes_run:
                backend.run(np.zeros((size, spec.input.channels, spec.input.size,
                                      spec.input.size), np.float32))
        return stored, backend, layout

    def _build_backend(self, spec: ModelSpec, stored: StoredModel
                       ) -> tuple[Backend, LayoutChoice]:
        """The model's backend, with its instance layout and the batches it runs configured
        or chosen by measurement (service/core/layout.py)."""
        backend, layout = self._build_layout(spec, stored)
        batching = self.config.batching_for(spec.name)
        preferred = batching.preferred_batch_size
        if preferred is None:
            return backend, layout
        if preferred != "auto":
            choice = BatchSizeChoice(preferred)
        else:
            choice = choose_batch_size(
                backend.run, functools.partial(noise_batch, spec), layout.instances,
                batching.max_batch_size, warmed=layout.batch_sizes_run)
        return backend, dataclasses.replace(layout, preferred_batch=choice)

    def _build_layout(self, spec: ModelSpec, stored: StoredModel
                      ) -> tuple[Backend, LayoutChoice]:
        config, batching = self.config, self.config.batching_for(spec.name)

        def make(threads: int) -> Backend:
            return self.make_backend(config, stored, spec.name, threads)

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
        choice, _ = choose_layout(runner, noise_batch(spec, batching.max_batch_size), cores)
        return backends[choice.threads], choice

    def _check_files(self, stored: StoredModel) -> None:
        """Refuse a stored model whose files no longer match the digests recorded at import
        (a corrupt disk, a truncated copy, a hand-edited file)."""
        needed = ["model.onnx"] + (["weights.safetensors"] if self.config.backend == "pytorch"
                                   else [])
        for file_name in needed:
            expected = stored.record.get("files", {}).get(file_name)
            path = stored.path / file_name
            actual = self.file_digest(path) if path.exists() else "missing"
            if actual != expected:
                raise NotReady(
                    f"model {stored.name}: stored {file_name} is corrupt (sha256 "
                    f"{actual[:16]}, recorded {str(expected)[:16]}); re-import it with "
                    f"`python -m model_store pull {stored.name}`", model=stored.name)

    async def _evict_for(self, needed_mb: float) -> None:
        def used() -> float:
            return sum(e.memory_mb for e in self.loaded.values())

        while self.loaded and used() + needed_mb > self.config.memory_budget_mb:
            idle = [e for e in self.loaded.values()
                    if e.batcher.idle and e.spec.name != self.config.default_model]
            if not idle:
                return  # everything is busy: go over budget rather than fail requests
            victim = min(idle, key=lambda e: e.batcher.last_used)
            log.info("evicting %s (memory budget %.0f MB)", victim.spec.name,
                     self.config.memory_budget_mb)
            del self.loaded[victim.spec.name]
            metrics.MODEL_READY.labels(victim.spec.name).set(0)
            metrics.MODELS_LOADED.set(len(self.loaded))
            await victim.batcher.close()
