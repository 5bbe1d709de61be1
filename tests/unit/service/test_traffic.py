"""The cancelling timeout: same answers as BentoML's TimeoutMiddleware (the app's response, or
504 past the timeout), but no timer left behind once a request has been answered."""

from __future__ import annotations

import asyncio
import gc

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service.traffic import BENTOML_TIMEOUT_MIDDLEWARE, CancellingTimeoutMiddleware


async def quick(request):
    return PlainTextResponse("ok")


async def slow(request):
    await asyncio.sleep(5)
    return PlainTextResponse("late")


async def broken(request):
    raise RuntimeError("boom")


def client(middleware, timeout: float) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/quick", quick), Route("/slow", slow),
                            Route("/broken", broken)])
    app.add_middleware(middleware, timeout=timeout)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def pending_timers(horizon_s: float) -> int:
    """Timers still scheduled at least `horizon_s` from now."""
    now = asyncio.get_running_loop().time()
    return sum(1 for o in gc.get_objects() if type(o) is asyncio.TimerHandle
               and not o.cancelled() and o.when() > now + horizon_s)


@pytest.mark.parametrize("middleware, left_behind", [
    (BENTOML_TIMEOUT_MIDDLEWARE, 50),  # the leak this module exists for
    (CancellingTimeoutMiddleware, 0),
])
async def test_answered_requests_leave_no_timer_behind(middleware, left_behind):
    before = pending_timers(200)
    async with client(middleware, timeout=300) as http:
        for _ in range(50):
            assert (await http.get("/quick")).text == "ok"
    assert pending_timers(200) - before == left_behind


async def test_a_request_past_the_timeout_is_504():
    async with client(CancellingTimeoutMiddleware, timeout=0.2) as http:
        response = await http.get("/slow")
    assert response.status_code == 504 and "0.2 seconds" in response.json()["error"]


async def test_an_app_that_fails_before_answering_is_not_held_for_the_timeout():
    async with client(CancellingTimeoutMiddleware, timeout=300) as http:
        response = await asyncio.wait_for(http.get("/broken"), 5)
    assert response.status_code == 500
