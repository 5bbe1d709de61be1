"""REST authentication: an ASGI middleware that asks every HTTP request for an API key.

`service.service` adds it to the BentoML service (`ConvZoo.add_asgi_middleware`), so it stands
in front of BentoML's own routes as well as ours; the configured `open_paths` (/livez,
/readyz, /metrics by default) pass without a key. A missing or wrong key is answered 401 with
the core's error body and `WWW-Authenticate: Bearer`. The check itself is `service.core.auth`.
"""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from service.core.auth import ApiKeys
from service.core.config import load_config
from service.core.errors import Unauthenticated, http_status

log = logging.getLogger("convzoo.auth")


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: ApiKeys | None = None) -> None:
        self.app = app
        # Built in the worker with the app, from the same configuration as the core.
        self.keys = keys if keys is not None else ApiKeys.from_config(load_config())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] not in ("http", "websocket") or not self.keys.enabled
                or self.keys.is_open(scope["path"])):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            self.keys.check(headers.get("authorization"), headers.get("x-api-key"))
        except Unauthenticated as error:
            client = scope.get("client") or ("?", 0)
            log.info("refused %s %s from %s: %s", scope.get("method", "WS"), scope["path"],
                     client[0], error.message)
            if scope["type"] == "websocket":
                await WebSocketClose(code=1008, reason=error.message)(scope, receive, send)
                return
            response = JSONResponse(error.to_dict(), status_code=http_status(error),
                                    headers={"WWW-Authenticate": 'Bearer realm="convzoo"'})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
