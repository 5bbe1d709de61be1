"""Decode admission: lanes by cost, budgets, bounded waits, and nothing lost.

The work is an event that the test sets, so every test says exactly what is running when,
with no timing assumptions beyond the waits' own bounds.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from service.core.admission import DecodeAdmission, Lane, LaneConfig
from service.core.errors import Overloaded, http_status

SMALL = LaneConfig("small", max_image_pixels=1_000, budget_pixels=4_000, threads=1)
LARGE = LaneConfig("large", max_image_pixels=100_000, budget_pixels=20_000, threads=1)


def blocking_work(release: threading.Event, result: str):
    def work() -> str:
        if not release.wait(10):
            raise TimeoutError("the test never released the work")
        return result
    return work


async def wait_until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def test_images_go_to_the_lane_of_their_size():
    admission = DecodeAdmission((SMALL, LARGE), max_wait_s=1)
    try:
        assert admission.lane_for(1_000).name == "small"
        assert admission.lane_for(1_001).name == "large"
        assert admission.lane_for(10**9).name == "large"  # the last lane takes the rest
    finally:
        admission.close()


async def test_a_small_image_passes_while_large_ones_fill_their_lane():
    admission = DecodeAdmission((SMALL, LARGE), max_wait_s=5)
    large, release = admission.lane_for(50_000), threading.Event()
    try:
        # Two large images: the first decodes, the second waits (over the 20k budget).
        first = asyncio.ensure_future(large.run(15_000, blocking_work(release, "a")))
        second = asyncio.ensure_future(large.run(15_000, blocking_work(release, "b")))
        await wait_until(lambda: large.waiting_requests == 1)
        small = admission.lane_for(500)
        result, waited = await small.run(500, lambda: "thumbnail")
        assert result == "thumbnail" and not first.done() and not second.done()
        release.set()
        assert [(await first)[0], (await second)[0]] == ["a", "b"]
    finally:
        release.set()
        admission.close()


async def test_over_budget_a_request_waits_its_bound_then_is_refused_with_retry_after():
    lane, release = Lane(LARGE, max_wait_s=0.2), threading.Event()
    try:
        running = asyncio.ensure_future(lane.run(15_000, blocking_work(release, "ok")))
        await wait_until(lambda: lane.admitted_requests == 1)
        with pytest.raises(Overloaded, match="decoding is saturated") as info:
            await lane.run(15_000, lambda: "never")
        assert http_status(info.value) == 503 and info.value.retry_after_s >= 1
        assert lane.waiting_requests == 0  # the refused request left nothing behind
        release.set()
        assert (await running)[0] == "ok"
        assert lane.admitted_pixels == 0 and lane.admitted_requests == 0
    finally:
        release.set()
        lane.close()


async def test_a_deadline_shortens_the_wait():
    lane, release = Lane(LARGE, max_wait_s=30), threading.Event()
    try:
        running = asyncio.ensure_future(lane.run(15_000, blocking_work(release, "ok")))
        await wait_until(lambda: lane.admitted_requests == 1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Overloaded):
            await lane.run(15_000, lambda: "never", deadline=time.monotonic() + 0.1)
        assert loop.time() - started < 5
        release.set()
        await running
    finally:
        release.set()
        lane.close()


async def test_waiters_are_admitted_in_arrival_order_as_budget_frees():
    lane = Lane(LaneConfig("large", 100_000, budget_pixels=10_000, threads=1), max_wait_s=5)
    releases = [threading.Event() for _ in range(3)]
    order: list[int] = []

    def work(index: int):
        def run() -> int:
            order.append(index)
            releases[index].wait(10)
            return index
        return run

    try:
        tasks = [asyncio.ensure_future(lane.run(8_000, work(i))) for i in range(3)]
        await wait_until(lambda: lane.waiting_requests == 2)
        for release in releases:
            release.set()
        assert [(await t)[0] for t in tasks] == [0, 1, 2]
        assert order == [0, 1, 2]
    finally:
        for release in releases:
            release.set()
        lane.close()


async def test_an_image_larger_than_the_whole_budget_still_runs_alone():
    lane = Lane(LaneConfig("large", 100_000, budget_pixels=1_000, threads=1), max_wait_s=1)
    try:
        assert (await lane.run(50_000, lambda: "alone"))[0] == "alone"
    finally:
        lane.close()


async def test_a_caller_that_goes_away_while_waiting_or_decoding_gives_its_budget_back():
    lane, release = Lane(LARGE, max_wait_s=5), threading.Event()
    try:
        running = asyncio.ensure_future(lane.run(15_000, blocking_work(release, "ok")))
        waiting = asyncio.ensure_future(lane.run(15_000, lambda: "never"))
        await wait_until(lambda: lane.waiting_requests == 1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert lane.waiting_requests == 0
        release.set()
        await running
        assert lane.admitted_pixels == 0 and lane.admitted_requests == 0
    finally:
        release.set()
        lane.close()


async def test_the_backlog_is_exported_as_metrics():
    from service.core import metrics

    lane, release = Lane(LaneConfig("metrics-test", 100_000, 20_000, 1), max_wait_s=5), \
        threading.Event()
    try:
        running = asyncio.ensure_future(lane.run(15_000, blocking_work(release, "ok")))
        waiting = asyncio.ensure_future(lane.run(12_000, lambda: "next"))
        await wait_until(lambda: lane.waiting_requests == 1)
        assert metrics.DECODE_BACKLOG_PIXELS.labels("metrics-test")._value.get() == 27_000
        assert metrics.DECODE_BACKLOG_REQUESTS.labels("metrics-test")._value.get() == 2
        release.set()
        await running
        await waiting
        assert metrics.DECODE_BACKLOG_PIXELS.labels("metrics-test")._value.get() == 0
    finally:
        release.set()
        lane.close()
