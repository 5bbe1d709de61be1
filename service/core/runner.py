"""The single-model request path: encoded images (or pixels) -> one batch -> the model's
batcher -> softmax and top-k (classify), or the batch's features, L2-normalised if asked
(embed), with the time of every stage. Classify and embed submit to the same batcher, so
their images run in the same batches; each takes its own output of the one run.

Decoding and preprocessing run on the pipeline's threads (`service.core.pipeline`), large JPEGs
through nvJPEG when the GPU decode path is on (`service.core.gpu_decode`); the batch goes to
the engine's batcher as one submission, so a request's images (or a multi-crop's crops) run
together. Stage times go to the request's `timing_ms` and to the stage histograms under the
model's label. Composites (`service.core.composites`) and selection reuse these steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import numpy as np

from model_store.outputs import has_features
from model_store.repository import RANDOM_INIT
from model_store.specs import ModelSpec
from model_store.transforms import preprocess
from service.core import gpu_decode, metrics
from service.core.batcher import BatchResult
from service.core.engines import Engine
from service.core.errors import FeaturesUnavailable, InvalidArgument
from service.core.pipeline import ImagePipeline, Prepared
from service.core.postprocess import l2_normalized, softmax, top_k
from service.core.results import Classification, Embedding

RANDOM_INIT_WARNING = (
    "{name} has random-init weights (no real weights were imported): its predictions are "
    "meaningless; use it for latency profiling only"
)


FEATURES_UNAVAILABLE = (
    "model {name} was stored before stored graphs had a features output, so it cannot embed; "
    "re-import it with `python -m model_store pull {name} --force`"
)


def random_init_warning(engine: Engine) -> str | None:
    return (RANDOM_INIT_WARNING.format(name=engine.spec.name)
            if engine.weights_status == RANDOM_INIT else None)


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def record_preparation(label: str, prepared: list[Prepared], timing: dict[str, float]
                       ) -> None:
    """Stage times of the slowest image (they run side by side) into metrics and timing."""
    for stage, seconds in (("decode_wait", max(p.wait_s for p in prepared)),
                           ("decode", max(p.decode_s for p in prepared)),
                           ("preprocess", max(p.transform_s for p in prepared))):
        metrics.STAGE_LATENCY.labels(label, stage).observe(seconds)
        timing[stage] = ms(seconds)


@contextmanager
def _postprocess_stage(engine: Engine, timing: dict[str, float], started: float
                       ) -> Iterator[None]:
    """Times its block as the model's postprocess stage; `timing` gets that time and the
    request's total so far."""
    t0 = time.perf_counter()
    yield
    post_s = time.perf_counter() - t0
    metrics.STAGE_LATENCY.labels(engine.spec.name, "postprocess").observe(post_s)
    timing["postprocess"] = ms(post_s)
    timing["total"] = ms(time.perf_counter() - started)


def _require_features(engine: Engine, present: bool) -> None:
    """FeaturesUnavailable unless `engine`'s graph has the features output."""
    if not present:
        raise FeaturesUnavailable(FEATURES_UNAVAILABLE.format(name=engine.spec.name),
                                  model=engine.spec.name)


class ModelRunner:
    def __init__(self, pipeline: ImagePipeline) -> None:
        self.pipeline = pipeline
        # Set by the data plane's start-up when JPEGs are to decode on the GPU.
        self.gpu_jpeg: gpu_decode.GpuJpegPreprocessor | None = None

    async def preprocess_images(self, images: tuple[bytes, ...], spec: ModelSpec,
                                timing: dict[str, float], deadline: float | None = None
                                ) -> np.ndarray:
        """The images decoded at the model's resize and preprocessed, as one batch."""
        if self.gpu_jpeg is not None:  # large JPEGs through nvJPEG, the rest on the CPU
            batch, decode_s, prep_s = await self.pipeline.run_blocking(
                self.gpu_jpeg.preprocess, list(images), spec.input, self.pipeline.limits)
            record_preparation(spec.name, [Prepared(batch, 0.0, decode_s, prep_s)], timing)
            return batch
        prepared = await self.pipeline.prepare_all(
            list(images), spec.input.resize, partial(preprocess, spec=spec.input), deadline)
        record_preparation(spec.name, prepared, timing)
        if len(prepared) == 1:
            return prepared[0].value[None]  # a view: no copy for the common single image
        return np.stack([p.value for p in prepared])

    async def run_batch(self, engine: Engine, batch: np.ndarray, timing: dict[str, float],
                        deadline: float | None = None) -> BatchResult:
        """A preprocessed batch through the model's batcher: this request's rows of every
        output, its queue and infer times in `timing`."""
        result: BatchResult = await engine.batcher.submit(batch, deadline)
        timing["queue"] = round(result.queue_ms, 3)
        timing["infer"] = round(result.infer_ms, 3)
        timing["batch_size"] = result.batch_size
        return result

    async def infer(self, engine: Engine, batch: np.ndarray, timing: dict[str, float],
                    deadline: float | None = None) -> np.ndarray:
        """Probabilities (n, classes) for a preprocessed batch through the model's batcher."""
        result = await self.run_batch(engine, batch, timing, deadline)
        return softmax(result.logits.astype(np.float32))

    def results(self, engine: Engine, probabilities: np.ndarray, k: int,
                timing: dict[str, float], started: float) -> list[Classification]:
        """One classification per row of `probabilities`, the postprocessing timed."""
        with _postprocess_stage(engine, timing, started):
            predictions = [top_k(p, k, engine.labels) for p in probabilities]
        weights, warning = engine.weights_status, random_init_warning(engine)
        return [Classification(model=engine.spec.name, weights=weights, warning=warning,
                               predictions=row,
                               timing_ms=dict(timing))
                for row in predictions]

    async def classify(self, engine: Engine, images: tuple[bytes, ...], k: int,
                       deadline: float | None, started: float) -> list[Classification]:
        timing: dict[str, float] = {}
        batch = await self.preprocess_images(images, engine.spec, timing, deadline)
        probabilities = await self.infer(engine, batch, timing, deadline)
        return self.results(engine, probabilities, k, timing, started)

    async def classify_pixels(self, engine: Engine, pixels: np.ndarray, k: int,
                              deadline: float | None, started: float,
                              check_count: Callable[[int], None]) -> list[Classification]:
        """As `classify`, for tensors already preprocessed to the model's input shape."""
        spec = engine.spec.input
        expected = (spec.channels, spec.size, spec.size)
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != expected:
            raise InvalidArgument(f"PIXELS for {engine.spec.name} must have shape [-1, "
                                  f"{expected[0]}, {expected[1]}, {expected[2]}], got "
                                  f"{list(pixels.shape)}")
        check_count(len(pixels))
        if not np.isfinite(pixels).all():
            raise InvalidArgument("PIXELS contains NaN or infinite values")
        timing: dict[str, float] = {}
        probabilities = await self.infer(engine, pixels.astype(np.float32, copy=False), timing,
                                         deadline)
        return self.results(engine, probabilities, k, timing, started)

    async def embed(self, engine: Engine, images: tuple[bytes, ...], normalize: bool,
                    deadline: float | None, started: float) -> list[Embedding]:
        """Each image's features (the graph's second output), the images run as one batch
        through the same batcher as classify; refused before any work for a graph without
        that output."""
        _require_features(engine, has_features(engine.stored))
        timing: dict[str, float] = {}
        batch = await self.preprocess_images(images, engine.spec, timing, deadline)
        result = await self.run_batch(engine, batch, timing, deadline)
        # None where the record claims a features output that its graph lacks.
        _require_features(engine, result.features is not None)
        with _postprocess_stage(engine, timing, started):
            vectors = result.features.astype(np.float32, copy=False)
            if normalize:
                vectors = l2_normalized(vectors)
        weights, warning = engine.weights_status, random_init_warning(engine)
        return [Embedding(model=engine.spec.name, weights=weights, vector=vector,
                          normalized=normalize, timing_ms=dict(timing), warning=warning)
                for vector in vectors]
