"""The guarded shim on BentoML's request timeout (service.bentoml_timeout), against the
installed BentoML's own code: its app factory, asked for its middlewares with a timeout set,
builds the pass-through once the shim is installed; its original middleware leaves a timer per
request for the whole timeout, the pass-through none. An upgrade of BentoML that moves any of
this fails here (and the service refuses to start: `check`)."""

from __future__ import annotations

import asyncio
import gc
import importlib.util

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service import bentoml_timeout


def bentomls_own_timeout_middleware() -> type:
    """BentoML's TimeoutMiddleware as its source defines it (whether or not the shim has
    replaced the module's attribute in this process)."""
    origin = importlib.util.find_spec(bentoml_timeout.TRAFFIC_MODULE).origin
    spec = importlib.util.spec_from_file_location("bentoml_traffic_as_shipped", origin)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TimeoutMiddleware


def pending_timers(horizon_s: float) -> int:
    now = asyncio.get_running_loop().time()
    return sum(1 for o in gc.get_objects() if type(o) is asyncio.TimerHandle
               and not o.cancelled() and o.when() > now + horizon_s)


async def quick(request):
    return PlainTextResponse("ok")


async def timers_left_by(middleware: type) -> int:
    app = Starlette(routes=[Route("/quick", quick)])
    app.add_middleware(middleware, timeout=300)
    before = pending_timers(200)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for _ in range(20):
            assert (await http.get("/quick")).text == "ok"
    return pending_timers(200) - before


async def test_bentomls_timeout_leaves_a_timer_per_request_and_the_pass_through_none():
    assert await timers_left_by(bentomls_own_timeout_middleware()) == 20  # why the shim exists
    assert await timers_left_by(bentoml_timeout.PassThrough) == 0


def test_once_installed_bentomls_app_factory_builds_the_pass_through():
    bentoml_timeout.install()  # idempotent; checks itself
    from bentoml._internal.server.base_app import BaseAppFactory

    class Factory(BaseAppFactory):
        name = "test"

    classes = [m.cls for m in Factory(timeout=60.0).middlewares]
    assert bentoml_timeout.PassThrough in classes
    assert Factory(timeout=None).middlewares == []  # no timeout, no middleware at all


def test_the_service_module_installs_the_shim_and_the_time_limit():
    import service.service as service_module
    from service.time_limit import RequestTimeLimit

    traffic = importlib.import_module(bentoml_timeout.TRAFFIC_MODULE)
    assert traffic.TimeoutMiddleware is bentoml_timeout.PassThrough
    added = [middleware for middleware, _ in service_module.ConvZoo.middlewares]
    assert added[0] is RequestTimeLimit
