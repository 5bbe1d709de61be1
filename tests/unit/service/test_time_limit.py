"""The request-time bound: the app's answer, or 504 with the service's error body past the
bound, and no timer left behind once a request has been answered (BentoML's own timeout kept
one per request for its whole timeout: test_bentoml_timeout.py shows it)."""

from __future__ import annotations

import asyncio
import gc

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service.time_limit import RequestTimeLimit


async def quick(request):
    return PlainTextResponse("ok")


async def slow(request):
    await asyncio.sleep(5)
    return PlainTextResponse("late")


async def broken(request):
    raise RuntimeError("boom")


def app_with(middleware, **options) -> Starlette:
    app = Starlette(routes=[Route("/quick", quick), Route("/slow", slow),
                            Route("/broken", broken)])
    app.add_middleware(middleware, **options)
    return app


def client(app) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def pending_timers(horizon_s: float) -> int:
    """Timers still scheduled at least `horizon_s` from now."""
    now = asyncio.get_running_loop().time()
    return sum(1 for o in gc.get_objects() if type(o) is asyncio.TimerHandle
               and not o.cancelled() and o.when() > now + horizon_s)


async def test_answered_requests_leave_no_timer_behind():
    before = pending_timers(200)
    async with client(app_with(RequestTimeLimit, timeout_s=300)) as http:
        for _ in range(50):
            assert (await http.get("/quick")).text == "ok"
    assert pending_timers(200) - before == 0


async def test_a_request_past_the_bound_is_504_with_the_services_error_body():
    async with client(app_with(RequestTimeLimit, timeout_s=0.2)) as http:
        response = await http.get("/slow")
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "deadline_exceeded" and "0.2 s (request_timeout_s)" in error["message"]


async def test_an_app_that_fails_before_answering_is_not_held_for_the_bound():
    async with client(app_with(RequestTimeLimit, timeout_s=300)) as http:
        response = await asyncio.wait_for(http.get("/broken"), 5)
    assert response.status_code == 500
