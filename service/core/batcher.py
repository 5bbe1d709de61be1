"""A per-model dynamic batcher, in the manner of Triton's.

Requests (one or more images each, already preprocessed) queue per model; a worker takes the
queue head and waits at most `max_delay_ms` for more, up to `max_batch_size` images, then runs
them as one batch on the model's executor thread while the next batch gathers. A request's
images always run together (a 10-crop is one request). A run gives every output of the model
(`ModelOutputs`: logits and features), so classify and embed requests share batches and each
caller takes its rows of what it needs. The queue is bounded in images: past
`max_queue` a request is refused at once (`Overloaded`) instead of piling up. Requests whose
caller went away, or whose deadline passed, are dropped before they reach the model.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service.core import metrics
from service.core.errors import DeadlineExceeded, Overloaded
from service.core.outputs import ModelOutputs


@dataclass
class BatchResult:
    outputs: ModelOutputs  # this request's rows
    queue_ms: float
    infer_ms: float
    batch_size: int

    @property
    def logits(self) -> np.ndarray:
        return self.outputs.logits

    @property
    def features(self) -> np.ndarray | None:
        return self.outputs.features


@dataclass
class _Pending:
    inputs: np.ndarray
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)
    deadline: float | None = None  # time.monotonic() seconds


class Batcher:
    def __init__(self, model: str, run: Callable[[np.ndarray], ModelOutputs], *,
                 max_batch_size: int = 16, max_delay_ms: float = 5.0, max_queue: int = 256,
                 instances: int = 1):
        self.model = model
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay_ms / 1000.0
        self.max_queue = max_queue
        self.instances = instances
        self._queue: deque[_Pending] = deque()
        self._queued_images = 0
        self._arrived = asyncio.Event()
        # One thread per instance: a model instance runs one batch at a time.
        self._executor = ThreadPoolExecutor(instances, thread_name_prefix=f"infer-{model}")
        self._workers = [asyncio.create_task(self._work()) for _ in range(instances)]
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.recent_batch_ms: deque[float] = deque(maxlen=50)

    @property
    def queued_images(self) -> int:
        return self._queued_images

    @property
    def idle(self) -> bool:
        return not self._queue and self.in_flight == 0

    async def submit(self, inputs: np.ndarray, deadline: float | None = None) -> BatchResult:
        count = len(inputs)
        if self._queued_images + count > self.max_queue:
            metrics.SHED.labels(self.model).inc()
            raise Overloaded(
                f"model {self.model} is overloaded: {self._queued_images} images queued, "
                f"limit {self.max_queue}; retry later", retry_after_s=self.retry_after_s(),
                model=self.model)
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(inputs, future, deadline=deadline))
        self._queued_images += count
        metrics.QUEUE_DEPTH.labels(self.model).set(self._queued_images)
        self.last_used = time.monotonic()
        self._arrived.set()
        return await future

    def retry_after_s(self) -> float:
        """How long the present queue should take to drain, from recent batch times."""
        per_batch = (sum(self.recent_batch_ms) / len(self.recent_batch_ms) / 1000.0
                     if self.recent_batch_ms else 0.1)
        batches = max(1, self._queued_images // max(1, self.max_batch_size))
        return round(max(1.0, batches * per_batch), 1)

    def _take_batch(self) -> list[_Pending]:
        taken: list[_Pending] = []
        size = 0
        now = time.monotonic()
        while self._queue:
            head = self._queue[0]
            if taken and size + len(head.inputs) > self.max_batch_size:
                break
            self._queue.popleft()
            self._queued_images -= len(head.inputs)
            if head.future.done():  # the caller went away: do not spend the model on it
                continue
            if head.deadline is not None and now > head.deadline:
                head.future.set_exception(DeadlineExceeded(
                    f"deadline passed while queued for {self.model}"))
                continue
            taken.append(head)
            size += len(head.inputs)
        metrics.QUEUE_DEPTH.labels(self.model).set(self._queued_images)
        return taken

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            # Wait for a fuller batch, but never past the head's max delay.
            wait_until = self._queue[0].enqueued + self.max_delay
            while self._queued_images < self.max_batch_size:
                remaining = wait_until - time.perf_counter()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take_batch()
            if not batch:
                continue
            started = time.perf_counter()
            parts = [p.inputs for p in batch]
            count = sum(len(part) for part in parts)
            self.in_flight += 1
            try:
                # Joined on the model's thread: a 32-image copy is not the event loop's work.
                outputs = await loop.run_in_executor(self._executor, self._run_parts, parts)
            except Exception as exc:  # the model failed: every caller in the batch learns why
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            finally:
                self.in_flight -= 1
            infer_ms = (time.perf_counter() - started) * 1000.0
            self.recent_batch_ms.append(infer_ms)
            metrics.BATCH_SIZE.labels(self.model).observe(count)
            metrics.IMAGES.labels(self.model).inc(count)
            metrics.STAGE_LATENCY.labels(self.model, "infer").observe(infer_ms / 1000.0)
            offset = 0
            for pending in batch:
                size = len(pending.inputs)
                queue_ms = (started - pending.enqueued) * 1000.0
                metrics.STAGE_LATENCY.labels(self.model, "queue").observe(queue_ms / 1000.0)
                if not pending.future.done():
                    pending.future.set_result(BatchResult(
                        outputs.rows(offset, offset + size), queue_ms, infer_ms, count))
                offset += size

    def _run_parts(self, parts: list[np.ndarray]) -> ModelOutputs:
        return self._run_chunked(np.concatenate(parts) if len(parts) > 1 else parts[0])

    def _run_chunked(self, inputs: np.ndarray) -> ModelOutputs:
        # One request may carry more images than a batch (a 144-crop): run it in slices.
        if len(inputs) <= self.max_batch_size:
            return self._run(inputs)
        return ModelOutputs.joined([self._run(inputs[i:i + self.max_batch_size])
                                    for i in range(0, len(inputs), self.max_batch_size)])

    async def close(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(Overloaded(f"model {self.model} was unloaded"))
        self._executor.shutdown(wait=False)
