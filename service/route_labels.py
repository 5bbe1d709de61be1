"""HTTP metric labels from route templates, never from the paths clients invent.

BentoML labels its HTTP metrics (`bentoml_service_request_total`, `_request_duration_seconds`,
`_request_in_progress`) with `scope["path"]` as sent, so every invented path made about 20
series that were never removed: 3,000 requests to random paths grew /metrics from 0.66 MB to
72.6 MB and the worker by 379 MB (issue 14); `/models/{name}` with invented names did the
same. BentoML has no option for it and its metrics middleware is the outermost of its app, so
`RouteLabels`, which `service.http_guard` puts in front of the whole app, shows BentoML's
middlewares the path's route template instead (`/models/{name}`, `/static_content/{path}`, or
`UNMATCHED` for a path no route takes), and `RestorePath`, ConvZoo's first ASGI middleware
(`service.service`), gives the real path back before anything authenticates or routes on it.
BentoML's access log and OpenTelemetry spans see the template as well.

The templates come from the app's own routes through Starlette's public routing API
(`routes`, `BaseRoute.matches`, `Mount.routes`), so a new route needs no list kept in step.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("convzoo.http")

UNMATCHED = "__unmatched__"
# Where RouteLabels keeps the real path for RestorePath.
ORIGINAL_PATH = "convzoo.original_path"


def route_template(routes: list[BaseRoute], scope: Scope, prefix: str = "") -> str | None:
    """The template of the route that takes `scope` (a full match before one on the path
    alone, as Starlette's router), or None."""
    partial = None
    for route in routes:
        match, child_scope = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount):
            template = (route_template(route.routes, {**scope, **child_scope},
                                       prefix + route.path)
                        if route.routes else f"{prefix}{route.path}/{{path}}")
        else:
            template = prefix + getattr(route, "path", "")
        if template is None:
            continue
        if match is Match.FULL:
            return template
        partial = partial or template
    return partial


class RouteLabels:
    """Shows the app's outer middlewares a route template for `scope["path"]`."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes
        # Paths of parameter-free routes (path == template): bounded by the routes.
        self._static: dict[str, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path = scope["path"]
            scope = {**scope, "path": self.template(scope), ORIGINAL_PATH: path}
        await self.app(scope, receive, send)

    def template(self, scope: Scope) -> str:
        path = scope["path"]
        template = self._static.get(path)
        if template is None:
            template = route_template(self.routes, scope) or UNMATCHED
            if template == path:
                self._static[path] = template
        return template


class RestorePath:
    """ASGI middleware: the real path back, after BentoML's middlewares have labelled it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        original = scope.get(ORIGINAL_PATH)
        if original is not None:
            scope = {**scope, "path": original}
        await self.app(scope, receive, send)


def find_routes(app: Any) -> list[BaseRoute] | None:
    """The routes of the Starlette app inside uvicorn's wrappers (each keeps the app it
    wraps as `.app`), or None."""
    for _ in range(8):
        routes = getattr(app, "routes", None)
        if isinstance(routes, list):
            return routes
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


@lru_cache(maxsize=8)
def labelled(app: ASGIApp) -> ASGIApp:
    """`app` behind RouteLabels, once per app (uvicorn's protocol asks for each connection);
    an app whose routes cannot be found as it is, said in the log."""
    routes = find_routes(app)
    if routes is None:
        log.error("no Starlette routes found inside %r: HTTP metrics keep the paths clients "
                  "send as labels (service.route_labels)", app)
        return app
    return RouteLabels(app, routes)
