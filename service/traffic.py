"""BentoML's per-request timeout, without its memory cost.

BentoML 1.4 wraps every HTTP request in `TimeoutMiddleware`, which schedules a timer of
`traffic.timeout` seconds (300 here) and never cancels it. A timer keeps the request's context
alive: its OpenTelemetry span, futures, about 5 kB. So the worker's memory grew by request rate
x timeout x 5 kB before levelling off (found by `tools.soak`: +27 MB/min under REST alone at
86 requests/s on 2 cores, while gRPC, which does not pass through it, stayed flat; see
docs/reliability.md). This module's middleware is the same timeout with the timer cancelled
as soon as the request ends; it also stops waiting when the app fails before answering,
instead of holding the request for the whole timeout. `install()` puts it where BentoML looks
for its own, before the app is built.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

BENTOML_TIMEOUT_MIDDLEWARE = traffic.TimeoutMiddleware


class CancellingTimeoutMiddleware(BENTOML_TIMEOUT_MIDDLEWARE):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[Any] = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, answered)

        async def started(message: Message) -> None:
            if not answered.done():
                answered.set_result(None)
            await send(message)

        request = asyncio.ensure_future(self.app(scope, receive, started))
        request.add_done_callback(lambda _: answered.done() or answered.set_result(None))
        try:
            await answered
        except TimeoutError:
            if request.cancel():
                await JSONResponse(
                    {"error": f"Not able to process the request in {self.timeout} seconds"},
                    status_code=504)(scope, receive, send)
                return
        finally:
            timer.cancel()
        await request  # the rest of the response, or the app's exception


def install() -> None:
    """Make BentoML build its apps with the cancelling timeout (it imports the class from
    `bentoml._internal.server.http.traffic` when it builds an app)."""
    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware
