"""A bound on the request bodies held in memory by all requests together, and on how long a
body may take to arrive.

Each body was bounded (`max_body_bytes`, `service.http_common.read_body`) but not their sum: 40
connections each declaring 61 MiB and stalling after 60 MiB took the worker from 1.1 GB to
3.5 GB, held for the 300 s request timeout (issue 14). `BodyBudgetMiddleware` counts the body
bytes of every request in one `BodyBudget` of `max_body_bytes_in_flight`: a request that
declares its length (Content-Length) reserves it when the app first reads the body, so that a
body admitted can always finish; one without (chunked) reserves each chunk as it arrives; all
of it is given back when the request ends. A body that does not fit is refused with
`Overloaded` (503 and Retry-After, as a full queue) before more of it is read; nothing waits for
room, so nothing queues up in memory. A body not received within `body_timeout_s` of its
first read is refused with `RequestTimeout` (408) and its connection closed.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core import metrics
from service.core.config import load_config
from service.core.errors import Overloaded, RequestTimeout, http_status

RETRY_AFTER_S = 1.0  # bodies are given back as requests end, typically within a second


class BodyBudget:
    """Bytes of request bodies held now, against a limit (used from the event loop only)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        self.held -= size


class _MeteredBody:
    """One request's `receive`, counting its body against the budget and its deadline."""

    def __init__(self, scope: Scope, receive: Receive, budget: BodyBudget, timeout_s: float,
                 max_body_bytes: int) -> None:
        self._receive = receive
        self.budget = budget
        self.timeout_s = timeout_s
        declared = Headers(scope=scope).get("content-length", "")
        # A length over max_body_bytes is the route's 413, not the budget's business.
        self.declared = (int(declared) if declared.isdigit() and len(declared) < 19
                         and int(declared) <= max_body_bytes else None)
        self.reserved = 0
        self.received = 0
        self.deadline: float | None = None
        self.finished = False
        self.timed_out = False

    async def receive(self) -> Message:
        if self.finished:
            return await self._receive()
        loop = asyncio.get_running_loop()
        if self.deadline is None:
            self.deadline = loop.time() + self.timeout_s
            if self.declared:
                self._reserve(self.declared)
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self._receive()
        except TimeoutError:
            self.timed_out = True
            metrics.BODIES_REFUSED.labels("timeout").inc()
            raise RequestTimeout(f"the request body did not arrive within {self.timeout_s:g} "
                                 "s (body_timeout_s)") from None
        if message["type"] != "http.request":
            self.finished = True  # http.disconnect
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.reserved:
            self._reserve(self.received - self.reserved)
        self.finished = not message.get("more_body", False)
        return message

    def _reserve(self, size: int) -> None:
        if not self.budget.take(size):
            metrics.BODIES_REFUSED.labels("budget").inc()
            raise Overloaded(f"the server holds {self.budget.held} bytes of request bodies "
                             f"and takes at most {self.budget.limit} "
                             "(max_body_bytes_in_flight); retry shortly",
                             retry_after_s=RETRY_AFTER_S)
        self.reserved += size

    def release(self) -> None:
        self.budget.give_back(self.reserved)
        self.reserved = 0


class BodyBudgetMiddleware:
    def __init__(self, app: ASGIApp, budget: BodyBudget | None = None,
                 timeout_s: float | None = None, max_body_bytes: int | None = None) -> None:
        # Built in the worker with the app, from the same configuration as the core.
        config = load_config()
        self.app = app
        self.budget = budget or BodyBudget(config.body_bytes_in_flight)
        self.timeout_s = timeout_s or config.body_timeout_s
        self.max_body_bytes = max_body_bytes or config.body_limit_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _MeteredBody(scope, receive, self.budget, self.timeout_s, self.max_body_bytes)
        started = False

        async def answer(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if body.timed_out:  # the client stalled: do not wait for the rest
                    message = {**message, "headers": [*message.get("headers", []),
                                                      (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, body.receive, answer)
        except (Overloaded, RequestTimeout) as error:
            # Routes answer these themselves; this is for any that do not.
            if started:
                raise
            headers = ({"Retry-After": str(round(RETRY_AFTER_S))}
                       if isinstance(error, Overloaded) else {})
            await JSONResponse(error.to_dict(), status_code=http_status(error),
                               headers=headers)(scope, body.receive, answer)
        finally:
            body.release()

