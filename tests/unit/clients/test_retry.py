"""Retries: exponential backoff bounded in attempts and by the call's timeout, only for
errors worth retrying, through the same loop the sync and async clients use."""

from __future__ import annotations

import pytest

from clients.errors import (
    InvalidArgumentError,
    OverloadedError,
    UnavailableError,
)
from clients.protocol import RestCall
from clients.transport import MAX_ATTEMPTS_LIMIT, RetryPolicy, run_async, run_sync

NO_JITTER = RetryPolicy(max_attempts=4, initial_backoff_s=0.1, max_backoff_s=0.5,
                        multiplier=2.0, jitter=0.0)


class FakeClock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


class FlakySend:
    """Fails with the given errors, in order, then answers."""

    def __init__(self, *errors: Exception, answer: object = "ok") -> None:
        self.errors = list(errors)
        self.answer = answer
        self.timeouts: list[float | None] = []

    def __call__(self, call, timeout_s):
        self.timeouts.append(timeout_s)
        if self.errors:
            raise self.errors.pop(0)
        return self.answer


def one_call():
    answer = yield RestCall("GET", "/models")
    return answer


def test_backoff_grows_exponentially_up_to_the_cap():
    error = UnavailableError("down")
    assert [NO_JITTER.delay_s(n, error) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_retry_after_raises_the_pause_but_not_past_the_cap():
    assert NO_JITTER.delay_s(1, OverloadedError("full", retry_after_s=0.3)) == 0.3
    assert NO_JITTER.delay_s(1, OverloadedError("full", retry_after_s=30)) == 0.5


def test_jitter_adds_at_most_its_fraction():
    policy = RetryPolicy(initial_backoff_s=1.0, max_backoff_s=1.0, jitter=0.25)
    delays = {policy.delay_s(1, UnavailableError("down")) for _ in range(50)}
    assert all(1.0 <= d <= 1.25 for d in delays) and len(delays) > 1


@pytest.mark.parametrize("kwargs", [
    {"max_attempts": 0}, {"max_attempts": MAX_ATTEMPTS_LIMIT + 1}, {"multiplier": 0.5},
    {"initial_backoff_s": -1}, {"jitter": 2},
])
def test_policies_are_bounded(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_unavailable_is_retried_with_backoff_then_succeeds():
    clock, send = FakeClock(), FlakySend(UnavailableError("503"), UnavailableError("503"))
    assert run_sync(one_call(), send, NO_JITTER, 10.0, clock.sleep, clock) == "ok"
    assert clock.sleeps == [0.1, 0.2]
    # Each attempt gets what is left of the call's timeout.
    assert send.timeouts == [10.0, pytest.approx(9.9), pytest.approx(9.7)]


def test_errors_not_worth_retrying_are_raised_at_once():
    clock, send = FakeClock(), FlakySend(InvalidArgumentError("bad image"))
    with pytest.raises(InvalidArgumentError):
        run_sync(one_call(), send, NO_JITTER, 10.0, clock.sleep, clock)
    assert clock.sleeps == [] and len(send.timeouts) == 1


def test_attempts_are_bounded():
    clock = FakeClock()
    send = FlakySend(*[UnavailableError(f"down {i}") for i in range(10)])
    with pytest.raises(UnavailableError, match="down 3"):
        run_sync(one_call(), send, NO_JITTER, 10.0, clock.sleep, clock)
    assert len(send.timeouts) == 4 and clock.sleeps == [0.1, 0.2, 0.4]


def test_no_retry_would_end_past_the_timeout():
    clock = FakeClock()
    send = FlakySend(*[UnavailableError("down") for _ in range(10)])
    with pytest.raises(UnavailableError):
        run_sync(one_call(), send, NO_JITTER, 0.35, clock.sleep, clock)
    assert clock.sleeps == [0.1, 0.2]  # a third pause (0.4) would pass the 0.35 s budget


async def test_the_async_driver_retries_the_same_way():
    clock = FakeClock()
    flaky = FlakySend(OverloadedError("full", retry_after_s=0.25))

    async def send(call, timeout_s):
        return flaky(call, timeout_s)

    assert await run_async(one_call(), send, NO_JITTER, 5.0, clock.async_sleep, clock) == "ok"
    assert clock.sleeps == [0.25]
