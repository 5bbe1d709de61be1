"""Model loads off the event loop, each on a thread of its own, with a timeout.

A load reads the model's files, hashes them and builds an inference session: blocking work
that can block for ever when the files sit on a network disk that stops answering. Loads used
to share one thread with no timeout, so one such file stalled every other model's load behind
it (issue 14). Here each load runs on a daemon thread of its own (a thread blocked in a read
cannot be stopped, and a daemon thread does not hold up the process's exit); at most
`concurrency` loads run at once, a load that outlives `timeout_s` gives its place up and is
reported as NotReady, and until its thread returns further loads of that model are refused at
once instead of starting another thread that would block the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from service.core.errors import NotReady

log = logging.getLogger("convzoo.core")

T = TypeVar("T")


class LoadRunner:
    def __init__(self, concurrency: int, timeout_s: float) -> None:
        if concurrency < 1 or timeout_s <= 0:
            raise ValueError("model loads need a concurrency of at least 1 and a positive "
                             "timeout")
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        # Models whose load passed the timeout and whose thread has not returned yet: when it
        # started (monotonic seconds).
        self.stuck: dict[str, float] = {}
        self._slots: asyncio.Semaphore | None = None

    async def run(self, name: str, load: Callable[[], T]) -> T:
        """`load()`'s result, its exception, or NotReady once `timeout_s` has passed."""
        if name in self.stuck:
            waited = time.monotonic() - self.stuck[name]
            raise NotReady(f"model {name} is still loading after {waited:.0f} s; its files "
                           "may be on a disk that does not answer (see the server log)",
                           model=name)
        if self._slots is None:  # created in the running loop
            self._slots = asyncio.Semaphore(self.concurrency)
        async with self._slots:
            started = time.monotonic()
            result = self._start(name, load)
            try:
                return await asyncio.wait_for(asyncio.shield(result), self.timeout_s)
            except TimeoutError:
                self.stuck[name] = started
                result.add_done_callback(lambda done: self._finished_late(name, done))
                log.error("model %s did not load within %.0f s; its thread goes on waiting",
                          name, self.timeout_s)
                raise NotReady(f"model {name} did not load within {self.timeout_s:g} s "
                               "(model_load_timeout_s); its files may be on a disk that does "
                               "not answer (see the server log)", model=name) from None

    def _start(self, name: str, load: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[T] = loop.create_future()

        def settle(outcome: T | None, error: BaseException | None) -> None:
            if result.done():
                return
            if error is None:
                result.set_result(outcome)
            else:
                result.set_exception(error)

        def work() -> None:
            try:
                outcome, error = load(), None
            except BaseException as exc:  # handed to the awaiting coroutine
                outcome, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop closed while this load blocked
                loop.call_soon_threadsafe(settle, outcome, error)

        threading.Thread(target=work, name=f"model-load-{name}", daemon=True).start()
        return result

    def _finished_late(self, name: str, done: asyncio.Future) -> None:
        """A timed-out load returned at last: its result is dropped (the next request loads
        the model afresh) and the model may be tried again."""
        self.stuck.pop(name, None)
        error = None if done.cancelled() else done.exception()
        log.warning("model %s: the load that timed out has ended%s", name,
                    f" with {type(error).__name__}" if error else "")
