"""Admission of decoding work by its cost, in lanes, so that a flood of camera photos neither
holds unbounded work or memory nor makes a thumbnail wait behind it.

An image's cost is its full-resolution pixel count, read from its header before anything is
decoded (`service.core.decoding.ImageProbe.pixels`): decoding work grows with it for every
format (a JPEG's entropy decoding cannot be scaled away, only its IDCT), and so does memory
for the formats decoded in full. A 40 MP image costs a hundred times a thumbnail.

Each lane (by default `small`, images up to 2 MP, and `large`, the rest) has threads of its
own and a budget of pixels admitted, that is decoding or waiting for one of its threads. A
request that does not fit its lane's budget waits in arrival order for at most `max_wait_s`
(or its deadline), then is refused with `Overloaded` (503 + Retry-After, RESOURCE_EXHAUSTED
over gRPC). Small photos never queue behind large ones: their lane's threads are their own,
and the operating system shares the cores among all the threads that have work.

Memory: a lane decodes at most `threads` images at once, so the decoded pixels it holds are
bounded by threads x the largest image it admits x 4 bytes (plus the preprocessing's
copies); requests waiting to be admitted hold only their encoded bytes, which the HTTP layer
bounds. The budget bounds the work queued ahead of a request, so its wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from pydantic import ConfigDict, field_validator
from pydantic.dataclasses import dataclass

from service.core import metrics
from service.core.errors import Overloaded

log = logging.getLogger("convzoo.admission")

T = TypeVar("T")


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class LaneConfig:
    """One decode lane: the images it takes, its budget and its threads (checked when the
    configuration is read: service.core.config)."""

    name: str
    max_image_pixels: int  # images up to this many pixels; the last lane takes the rest
    budget_pixels: int  # pixels admitted at once (decoding or waiting for a thread)
    threads: int = 0  # 0: one per usable core

    @field_validator("max_image_pixels", "budget_pixels")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value

    @field_validator("threads")
    @classmethod
    def _threads(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"threads must be 0 (one per core) or more, got {value}")
        return value


class Lane:
    def __init__(self, config: LaneConfig, max_wait_s: float):
        self.config = config
        self.name = config.name
        self.max_wait_s = max_wait_s
        self._executor = ThreadPoolExecutor(config.threads,
                                            thread_name_prefix=f"decode-{config.name}")
        self.admitted_pixels = 0
        self.admitted_requests = 0
        self._waiting: deque[tuple[int, asyncio.Future]] = deque()
        # Decoding throughput (pixels per second per thread), for Retry-After.
        self._pixels_per_s = 50e6

    @property
    def waiting_requests(self) -> int:
        return len(self._waiting)

    def _fits(self, cost: int) -> bool:
        # One image larger than the whole budget still runs, alone.
        return (self.admitted_requests == 0
                or self.admitted_pixels + cost <= self.config.budget_pixels)

    def _grant(self, cost: int) -> None:
        self.admitted_pixels += cost
        self.admitted_requests += 1
        self._report()

    def _release(self, cost: int) -> None:
        self.admitted_pixels -= cost
        self.admitted_requests -= 1
        while self._waiting:
            head_cost, future = self._waiting[0]
            if future.done():  # its caller gave up
                self._waiting.popleft()
                continue
            if not self._fits(head_cost):
                break
            self._waiting.popleft()
            self._grant(head_cost)
            future.set_result(None)
        self._report()

    def _report(self) -> None:
        metrics.DECODE_BACKLOG_PIXELS.labels(self.name).set(
            self.admitted_pixels + sum(cost for cost, _ in self._waiting))
        metrics.DECODE_BACKLOG_REQUESTS.labels(self.name).set(
            self.admitted_requests + len(self._waiting))

    def retry_after_s(self) -> float:
        """How long the present backlog should take to drain."""
        backlog = self.admitted_pixels + sum(cost for cost, _ in self._waiting)
        seconds = backlog / (self._pixels_per_s * self.config.threads)
        return round(max(1.0, seconds), 1)

    async def _admit(self, cost: int, deadline: float | None) -> None:
        if not self._waiting and self._fits(cost):
            self._grant(cost)
            return
        wait_s = self.max_wait_s
        if deadline is not None:
            wait_s = min(wait_s, deadline - time.monotonic())
        future = asyncio.get_running_loop().create_future()
        entry = (cost, future)
        self._waiting.append(entry)
        self._report()
        try:
            await asyncio.wait_for(asyncio.shield(future), max(0.0, wait_s))
        except TimeoutError:
            if future.done():  # granted just as the wait ran out: take it
                return
            future.cancel()
            self._waiting.remove(entry)
            self._report()
            metrics.DECODE_REFUSED.labels(self.name).inc()
            raise Overloaded(
                f"decoding is saturated: {self.admitted_requests} images of the {self.name} "
                f"lane are decoding or queued ({self.admitted_pixels} pixels, budget "
                f"{self.config.budget_pixels}); retry later", retry_after_s=self.retry_after_s(),
                lane=self.name) from None
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(cost)  # granted, but the caller went away
            else:
                future.cancel()
                if entry in self._waiting:
                    self._waiting.remove(entry)
                    self._report()
            raise

    async def run(self, cost: int, work: Callable[..., T], *args, deadline: float | None = None
                  ) -> tuple[T, float]:
        """`work(*args)` on one of the lane's threads once `cost` is admitted; returns its
        result and the seconds waited (for the budget and for a thread)."""
        queued = time.perf_counter()
        await self._admit(cost, deadline)
        started: list[float] = []

        def timed() -> T:
            started.append(time.perf_counter())
            return work(*args)

        try:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, timed)
        finally:
            self._release(cost)
        if started:
            busy = time.perf_counter() - started[0]
            if busy > 0 and cost > 0:  # a slow moving average of decoding speed
                self._pixels_per_s += 0.1 * (cost / busy - self._pixels_per_s)
        return result, (started[0] if started else time.perf_counter()) - queued

    def close(self) -> None:
        for _, future in self._waiting:
            future.cancel()
        self._waiting.clear()
        self._executor.shutdown(wait=False)


class DecodeAdmission:
    """The lanes, and a thread of its own for reading headers (cheap for real images, but a
    hostile header's cost grows with the body, so never on the event loop)."""

    def __init__(self, lanes: tuple[LaneConfig, ...], max_wait_s: float):
        if not lanes:
            raise ValueError("at least one decode lane is needed")
        self.lanes = tuple(Lane(config, max_wait_s) for config in lanes)
        self._header_executor = ThreadPoolExecutor(1, thread_name_prefix="decode-header")

    def lane_for(self, pixels: int) -> Lane:
        for lane in self.lanes[:-1]:
            if pixels <= lane.config.max_image_pixels:
                return lane
        return self.lanes[-1]

    async def read_header(self, work: Callable[..., T], *args) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._header_executor, work,
                                                                *args)

    def close(self) -> None:
        for lane in self.lanes:
            lane.close()
        self._header_executor.shutdown(wait=False)
