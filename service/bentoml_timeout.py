"""BentoML's per-request timeout made a pass-through: the one guarded shim on a private
BentoML name (docs/architecture.md lists every such place).

BentoML 1.4 wraps every HTTP request in `TimeoutMiddleware`, which schedules a timer of
`traffic.timeout` seconds and never cancels it; the timer keeps the request's context (its
OpenTelemetry span, futures, about 5 kB) alive for the whole timeout, so the worker grew by
request rate x timeout x 5 kB (found by `tools.soak`, docs/reliability.md). Its configuration
cannot switch it off: `traffic.timeout` must be a positive number (BentoML's service schema),
and the app factory adds the middleware whenever it is set. So `install()` replaces the class
where BentoML's app factory looks it up when it builds the app
(`bentoml._internal.server.http.traffic.TimeoutMiddleware`) with `PassThrough`, and
`service.time_limit.RequestTimeLimit`, added through the public `add_asgi_middleware`, bounds
request time instead. `traffic.timeout` stays set to the same bound: were the shim not in
force, BentoML's timer, scheduled first, would answer before ours, which the integration test
`tests/integration/test_shims_in_force.py` would see.

`check()` runs at install and refuses to start when BentoML no longer builds its middleware
from that name (a clear error naming the pinned version); bentoml is pinned exactly in
pyproject.toml, and tests/unit/service/test_bentoml_timeout.py drives BentoML's own app
factory code.
"""

from __future__ import annotations

import importlib
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

TRAFFIC_MODULE = "bentoml._internal.server.http.traffic"
BASE_APP_MODULE = "bentoml._internal.server.base_app"
PINNED = "the bentoml version pinned in pyproject.toml"


class ShimUnavailable(RuntimeError):
    """The installed BentoML no longer builds its timeout middleware where this shim expects."""


class PassThrough:
    """Takes BentoML's TimeoutMiddleware's place and arguments, and only calls the app."""

    def __init__(self, app: ASGIApp, timeout: float | None = None, **_: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def install() -> None:
    """Make BentoML build its apps with the pass-through; called at the service's import,
    before BentoML's worker builds the app."""
    try:
        traffic = importlib.import_module(TRAFFIC_MODULE)
    except ImportError as exc:
        raise ShimUnavailable(f"{TRAFFIC_MODULE} cannot be imported ({exc}): BentoML's request "
                              f"timeout cannot be switched off; use {PINNED}") from None
    if not isinstance(getattr(traffic, "TimeoutMiddleware", None), type):
        raise ShimUnavailable(f"{TRAFFIC_MODULE} has no TimeoutMiddleware class; use {PINNED}")
    traffic.TimeoutMiddleware = PassThrough
    check()


def check() -> None:
    """BentoML's app factory, asked for its middlewares with a timeout set, must now give the
    pass-through (it imports the class from TRAFFIC_MODULE each time it builds an app)."""
    try:
        base_app = importlib.import_module(BASE_APP_MODULE)
        factory_class = base_app.BaseAppFactory
    except (ImportError, AttributeError) as exc:
        raise ShimUnavailable(f"{BASE_APP_MODULE}.BaseAppFactory is gone ({exc}); use "
                              f"{PINNED}") from None

    class Probe(factory_class):
        name = "probe"

    classes = [middleware.cls for middleware in Probe(timeout=300.0).middlewares]
    if PassThrough not in classes:
        raise ShimUnavailable(f"BentoML's app factory builds {classes} with a timeout set, not "
                              f"the pass-through: its request timeout would hold every "
                              f"request's context for the whole timeout; use {PINNED}")
