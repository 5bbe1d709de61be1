"""A bound on how long a request may take to be answered, as a plain ASGI middleware.

`RequestTimeLimit` runs the app for each HTTP request and waits for the answer to start; if
`request_timeout_s` passes first, it cancels the app (the request's queued work, its body
read, its model wait) and answers 504 with the service's error body (`deadline_exceeded`).
Its timer is cancelled as soon as the answer starts or the app ends, so nothing of a request
outlives it; BentoML's own timeout kept each request's context alive for the whole timeout
(about 5 kB a request, docs/reliability.md). It uses nothing but the ASGI interface and
Starlette's public `JSONResponse`, and `service.service` adds it with BentoML's public
`add_asgi_middleware`. BentoML's own timeout middleware, which cannot be switched off through
BentoML's configuration, is made a pass-through by `service.bentoml_timeout`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.config import load_config
from service.core.errors import DeadlineExceeded, http_status


class RequestTimeLimit:
    def __init__(self, app: ASGIApp, timeout_s: float | None = None) -> None:
        self.app = app
        # Built in the worker with the app, from the same configuration as the data plane.
        self.timeout_s = timeout_s if timeout_s is not None else load_config().request_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[Any] = loop.create_future()

        def out_of_time() -> None:
            if not answered.done():
                answered.set_exception(TimeoutError)

        timer = loop.call_later(self.timeout_s, out_of_time)

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
                error = DeadlineExceeded(f"the request was not answered within "
                                         f"{self.timeout_s:g} s (request_timeout_s)")
                await JSONResponse(error.to_dict(), status_code=http_status(error))(
                    scope, receive, send)
                return
        finally:
            timer.cancel()
        await request  # the rest of the response, or the app's exception
