"""The bound on request bodies in flight and the body timeout, driven through the middleware
with ASGI messages (a body can be made to stall between chunks), in front of a route that
reads its body as ConvZoo's routes do (`service.http_common.read_body`, errors through the one
status table)."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.requests import Request

from service.body_budget import BodyBudget, BodyBudgetMiddleware
from service.core.errors import ServiceError
from service.http_common import error_response, read_body

MAX_BODY = 100


async def route(scope, receive, send):
    try:
        body = await read_body(Request(scope, receive), MAX_BODY)
        response = error_response(ServiceError("x")) if body == b"boom" else None
        if response is None:
            from starlette.responses import JSONResponse

            response = JSONResponse({"size": len(body)})
    except ServiceError as error:
        response = error_response(error)
    await response(scope, receive, send)


def scope(length: int | None) -> dict:
    headers = [(b"content-type", b"application/octet-stream")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "method": "POST", "path": "/x", "headers": headers,
            "query_string": b""}


class Client:
    """One request: its chunks are sent when the test says so."""

    def __init__(self, middleware: BodyBudgetMiddleware, length: int | None) -> None:
        self.chunks: asyncio.Queue[tuple[bytes, bool]] = asyncio.Queue()
        self.sent: list[dict] = []
        self.task = asyncio.ensure_future(middleware(scope(length), self.receive, self.send))

    async def receive(self) -> dict:
        body, more = await self.chunks.get()
        return {"type": "http.request", "body": body, "more_body": more}

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    def put(self, body: bytes, more: bool = True) -> None:
        self.chunks.put_nowait((body, more))

    async def answer(self) -> tuple[int, dict, dict]:
        await asyncio.wait_for(self.task, 5)
        start = self.sent[0]
        headers = {k.decode(): v.decode() for k, v in start["headers"]}
        return start["status"], headers, json.loads(self.sent[1]["body"])


def middleware(limit: int, timeout_s: float = 5.0) -> BodyBudgetMiddleware:
    return BodyBudgetMiddleware(route, BodyBudget(limit), timeout_s, MAX_BODY)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_declared_bodies_that_do_not_fit_get_503_before_being_read():
    guard = middleware(limit=100)
    first = Client(guard, 60)
    await settle()
    assert guard.budget.held == 60  # reserved at the first read, before any byte came
    second = Client(guard, 60)
    status, headers, body = await second.answer()
    assert status == 503 and headers["retry-after"] == "1"
    assert body["error"]["code"] == "overloaded" and "max_body_bytes_in_flight" in (
        body["error"]["message"])
    first.put(b"a" * 60, more=False)
    assert (await first.answer())[0] == 200
    assert guard.budget.held == 0  # given back when the request ended
    third = Client(guard, 60)
    third.put(b"a" * 60, more=False)
    assert (await third.answer())[0] == 200


async def test_chunked_bodies_are_counted_as_they_arrive():
    guard = middleware(limit=100)
    first, second = Client(guard, None), Client(guard, None)
    first.put(b"a" * 50)
    second.put(b"b" * 40)
    await settle()
    assert guard.budget.held == 90
    second.put(b"b" * 20)  # would hold 110
    status, _, body = await second.answer()
    assert status == 503 and guard.budget.held == 50
    first.put(b"a" * 10, more=False)
    assert (await first.answer())[2] == {"size": 60}
    assert guard.budget.held == 0


async def test_the_budget_never_holds_more_than_its_limit():
    guard = middleware(limit=250)
    clients = [Client(guard, 90) for _ in range(6)]
    await settle()
    assert guard.budget.held == 180  # two fit; the four others were refused at once
    answers = [await c.answer() for c in clients[2:]]
    assert {a[0] for a in answers} == {503}
    for client in clients[:2]:
        client.put(b"x" * 90, more=False)
        assert (await client.answer())[0] == 200
    assert guard.budget.held == 0


async def test_a_stalled_body_gets_408_and_its_connection_closed():
    guard = middleware(limit=1000, timeout_s=0.2)
    client = Client(guard, 80)
    client.put(b"a" * 30)  # then nothing more
    status, headers, body = await client.answer()
    assert status == 408 and headers["connection"] == "close"
    assert body["error"]["code"] == "request_timeout" and "body_timeout_s" in (
        body["error"]["message"])
    assert guard.budget.held == 0


async def test_a_body_trickling_in_is_timed_as_a_whole():
    guard = middleware(limit=1000, timeout_s=0.3)
    client = Client(guard, 90)
    for _ in range(8):  # a byte every 0.1 s: never idle, never done
        client.put(b"a")
        await asyncio.sleep(0.1)
        if client.task.done():
            break
    assert (await client.answer())[0] == 408


async def test_a_declared_length_over_the_per_request_limit_is_the_routes_413():
    guard = middleware(limit=1000)
    client = Client(guard, MAX_BODY + 1)
    status, _, body = await client.answer()
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    assert guard.budget.held == 0


async def test_a_route_that_does_not_answer_the_budgets_errors_gets_them_answered():
    async def bare(scope, receive, send):  # lets the error escape, as BentoML's routes would
        await receive()

    guard = BodyBudgetMiddleware(bare, BodyBudget(10), 5.0, MAX_BODY)
    client = Client(guard, 20)
    status, headers, body = await client.answer()
    assert status == 503 and headers["retry-after"] == "1"


@pytest.mark.parametrize("length", [None, 0])
async def test_requests_without_a_body_pass(length):
    guard = middleware(limit=10)
    client = Client(guard, length)
    client.put(b"", more=False)
    assert (await client.answer())[2] == {"size": 0}
