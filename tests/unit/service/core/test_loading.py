"""Model loads with a timeout, on threads of their own: a load that blocks (a hung disk) is
reported NotReady after the timeout and does not hold up the loads of other models."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from service.core.errors import NotReady
from service.core.loading import LoadRunner

TIMEOUT_S = 0.3


def blocking(release: threading.Event, result: str = "loaded"):
    def load() -> str:
        release.wait(30)
        return result
    return load


async def test_a_hung_load_times_out_and_other_models_still_load():
    runner = LoadRunner(concurrency=1, timeout_s=TIMEOUT_S)
    release = threading.Event()
    started = time.monotonic()
    hung = asyncio.ensure_future(runner.run("hung", blocking(release)))
    # With one slot: the hung load gives it up at its timeout, and the next one runs.
    assert await runner.run("healthy", lambda: "ok") == "ok"
    with pytest.raises(NotReady, match=r"did not load within 0.3 s \(model_load_timeout_s\)"):
        await hung
    assert TIMEOUT_S * 0.9 < time.monotonic() - started < TIMEOUT_S + 2
    release.set()


async def test_a_model_whose_load_is_stuck_is_refused_at_once_until_its_thread_returns():
    runner = LoadRunner(concurrency=2, timeout_s=TIMEOUT_S)
    release = threading.Event()
    with pytest.raises(NotReady):
        await runner.run("hung", blocking(release))
    threads = [t for t in threading.enumerate() if t.name == "model-load-hung"]
    assert len(threads) == 1 and threads[0].daemon  # does not hold up the process's exit
    started = time.monotonic()
    with pytest.raises(NotReady, match="still loading after"):
        await runner.run("hung", blocking(release))
    assert time.monotonic() - started < 0.1
    assert len([t for t in threading.enumerate() if t.name == "model-load-hung"]) == 1
    release.set()
    for _ in range(100):  # the late result is dropped, and the model may be tried again
        if "hung" not in runner.stuck:
            break
        await asyncio.sleep(0.02)
    assert await runner.run("hung", lambda: "again") == "again"


async def test_loads_of_different_models_run_side_by_side():
    runner = LoadRunner(concurrency=2, timeout_s=5)
    both = threading.Barrier(2, timeout=5)

    def load(name):
        def run():
            both.wait()  # only returns once the other load is running too
            return name
        return run

    assert await asyncio.gather(runner.run("a", load("a")), runner.run("b", load("b"))) == [
        "a", "b"]


async def test_a_load_error_reaches_the_caller():
    runner = LoadRunner(concurrency=1, timeout_s=5)

    def broken():
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        await runner.run("broken", broken)
    assert runner.stuck == {}


def test_nonsense_limits_are_refused():
    with pytest.raises(ValueError):
        LoadRunner(concurrency=0, timeout_s=1)
    with pytest.raises(ValueError):
        LoadRunner(concurrency=1, timeout_s=0)
