"""What the HTTP adapters share: reading a body within its limits, error responses, the
deadline rule, JSON bodies. REST (`service.rest`) and OIP REST (`service.oip_rest`) are
siblings over this module; neither imports the other.

- Bodies are read as they stream, refused past `max_body_bytes` (a declared length before any
  byte is read), and counted against the bytes all requests hold together by
  `service.body_budget` in front. A route that parses a form from the body gets a request
  whose `receive` replays the bytes already read (`replayed`), through Starlette's public
  `Request(scope, receive)`, never its private `_body`.
- Errors become JSON through the core's one status table (`service.core.errors.STATUS`), with
  `Retry-After` where the error asks clients to wait: REST's body `{"error": {"code",
  "message", ...}}`, OIP's `{"error": message, "code": code}`.
- The deadline rule is `service.core.requests.deadline_for`: here, REST's `timeout_s` option
  and OIP REST's `timeout_s` parameter or `convzoo-timeout-s` header.
- The metric-label rule is the data plane's (`DataPlane.observe`), the same for gRPC.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.types import Message

from contract.errors import RETRY_AFTER_KEY, TIMEOUT_HEADER, ErrorCode
from service.core.arguments import parse_json_object, timeout_argument
from service.core.errors import (
    InvalidArgument,
    PayloadTooLarge,
    ServiceError,
    client_message,
    http_status,
    retry_after_header,
)

log = logging.getLogger("convzoo.http")

# Larger JSON bodies are parsed on a worker thread: the parser's number checks are Python
# calls, where the event loop can take the GIL back (a big OIP tensor as JSON takes 100 ms+).
JSON_THREAD_BYTES = 1 << 20
INTERNAL_MESSAGE = "internal error; see the server log"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it passes `limit` bytes: a declared length is
    checked before reading, and a chunked upload (no Content-Length) is counted as it streams,
    so that an endless body is never held in memory."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # nobody to answer; not a server error either
        raise InvalidArgument("the client closed the connection before the end of its "
                              "body") from None
    return b"".join(chunks)


def replayed(request: Request, body: bytes) -> Request:
    """`request` again, its `receive` giving `body` (already read) as one message, then what
    the connection sends next (a disconnect), so that Starlette's parsers can read it."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await request.receive()

    return Request(request.scope, receive)


async def json_object(body: bytes, what: str) -> dict[str, Any]:
    """`body` parsed as a JSON object by the shared argument parser, or a 400 naming `what`."""
    if len(body) < JSON_THREAD_BYTES:
        return parse_json_object(body, what)
    return await asyncio.to_thread(parse_json_object, body, what)


def _error_headers(error: ServiceError) -> dict[str, str]:
    retry_after = retry_after_header(error)
    return {RETRY_AFTER_KEY: retry_after} if retry_after else {}


def error_response(error: ServiceError) -> JSONResponse:
    """REST's error answer: the status of the one table, the code and message in the body."""
    return JSONResponse(error.to_dict(), status_code=http_status(error),
                        headers=_error_headers(error))


def oip_error_response(error: ServiceError) -> JSONResponse:
    """OIP REST's error answer: the same status and headers, the OIP error object."""
    return JSONResponse({"error": client_message(error.message), "code": error.code},
                        status_code=http_status(error), headers=_error_headers(error))


def internal_error_response(oip: bool = False) -> JSONResponse:
    body: dict[str, Any] = ({"error": INTERNAL_MESSAGE, "code": ErrorCode.INTERNAL} if oip else
                            {"error": {"code": ErrorCode.INTERNAL, "message": INTERNAL_MESSAGE}})
    return JSONResponse(body, status_code=500)


def timeout_header(request: Request) -> float | None:
    """The seconds OIP REST's `convzoo-timeout-s` header gives, if any."""
    return timeout_argument(request.headers.get(TIMEOUT_HEADER), TIMEOUT_HEADER)
