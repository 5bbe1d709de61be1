"""Limits on HTTP connections and request heads, enforced in uvicorn's HTTP protocol.

`bentoml serve` runs uvicorn with httptools (uvicorn's `http="auto"`), which has no limit on a
request head: httptools joins a header value arriving in pieces by concatenating Python bytes
(quadratic, on the event loop: one unfinished 120 MB header stalled /readyz for 8-11 s and
gRPC for 8.4 s, issue 14), and a connection that sends nothing, or half a head, is never
closed (uvicorn's keep-alive timer only runs between requests). uvicorn has no head limit for
httptools (Kludex/uvicorn#1684 was closed; its h11 parser has `h11_max_incomplete_event_size`)
and BentoML builds uvicorn's `Config` itself, passing neither `http=` nor h11's options
(bentoml/BentoML#4671 added the keep-alive and shutdown timeouts only).

`GuardedHttpToolsProtocol` is uvicorn's httptools protocol with:
- a head size limit: bytes received while a request head is incomplete are counted after each
  read is parsed (a read holding a head and the start of its body does not count the body);
  past `max_header_bytes` the request is answered 431 and the connection closed. A head
  complete within one read is measured from its parsed parts.
- a head time limit: from a connection's start, and from the first byte of each later request,
  the head must be complete within `header_timeout_s`; if not, 408 (or nothing, if nothing
  came) and the connection is closed.
- a connection limit: past `max_connections` open connections a new one is answered 503 and
  closed, so that what partial heads hold (at most `max_header_bytes` each) has a bound.
It also puts `service.route_labels.RouteLabels` in front of BentoML's app (uvicorn hands the
protocol the app; BentoML's metrics middleware is the outermost of the app itself).

Public and not: uvicorn's `Config(http=...)` takes a protocol class (documented), but BentoML
passes none, so `install()` makes uvicorn's "auto" resolve to this class by setting
`uvicorn.config.HTTP_PROTOCOLS["auto"]`, a module-level table that is not documented API. The
subclass uses HttpToolsProtocol's undocumented callbacks and attributes (named in
`REQUIRED_METHODS`, `REQUIRED_ATTRIBUTES`). `check()` runs at start-up: it verifies the names,
that uvicorn resolves "auto" to this class, and runs the protocol on a fake transport (a head
past the limit must get 431, a normal request must reach the app). uvicorn and httptools are
pinned in pyproject.toml; tests/unit/service/test_http_guard.py fails if an upgrade changes any
of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn import config as uvicorn_config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.core.config import ServingConfig
from service.route_labels import labelled

log = logging.getLogger("convzoo.http")

REQUIRED_METHODS = ("connection_made", "connection_lost", "data_received", "on_message_begin",
                    "on_headers_complete", "on_body", "on_message_complete")
REQUIRED_ATTRIBUTES = ("transport", "url", "headers", "loop", "app", "connections", "cycle",
                       "client")
GUARDED_PROTOCOL = f"{__name__}:GuardedHttpToolsProtocol"
# After refusing, read and drop at most this much, for at most this long (see _refuse).
LINGER_S = 2.0
LINGER_BYTES = 1 << 20


def _response(status: int, reason: str, code: str, message: str,
              extra_headers: bytes = b"") -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n").encode() + (
        extra_headers + b"\r\n" + body)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    # Set by install() from the service's configuration (service.core.config).
    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0
    max_connections: int = 2048

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = labelled(self.app)
        self._head_bytes = 0  # bytes of reads received while a head was incomplete
        self._in_head = True  # a request head is expected or incomplete
        self._heads = 0  # heads completed on this connection
        self._head_started = False  # some of that head has been parsed
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._dropped = 0  # bytes read and dropped after a refusal

    # --- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._refuse(503, "Service Unavailable", "too_many_connections",
                         f"the server holds {self.max_connections} connections already "
                         "(max_connections); retry shortly", b"retry-after: 1\r\n")
            return
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self.transport.close()
            return
        # A read counts when it neither completed a head (its body may follow in it, or a
        # whole request) nor started one after a body (one read of that head goes uncounted).
        counted, heads = self._in_head, self._heads
        super().data_received(data)
        if counted and self._in_head and heads == self._heads and not self._refused:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse_large_head()

    # --- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True
        if self._head_timer is None:
            self._start_head_timer()

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_header_bytes:
            self._refuse_large_head()
            return
        self._stop_head_timer()
        self._in_head = False
        self._heads += 1
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._in_head, self._head_started, self._head_bytes = True, False, 0

    # --- refusals --------------------------------------------------------------------------

    def _refuse_large_head(self) -> None:
        self._refuse(431, "Request Header Fields Too Large", "header_too_large",
                     f"the request line and headers exceed {self.max_header_bytes} bytes "
                     "(max_header_bytes)")

    def _start_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing():
            return
        if not self._head_started:  # nothing came: close quietly, as keep-alive does
            self._refused = True
            self.transport.close()
            return
        self._refuse(408, "Request Timeout", "request_timeout",
                     f"the request line and headers did not arrive within "
                     f"{self.header_timeout_s:g} s (header_timeout_s)")

    def _refuse(self, status: int, reason: str, code: str, message: str,
                extra_headers: bytes = b"") -> None:
        self._refused = True
        self._stop_head_timer()
        log.warning("refused a connection from %s: %d %s", self.client or "?", status, code)
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head went wrong while the previous response is being written: an
            # answer now would land inside that response.
            self.transport.close()
            return
        self.transport.write(_response(status, reason, code, message, extra_headers))
        if not self.transport.can_write_eof():  # TLS
            self.transport.close()
            return
        # A lingering close, as nginx's: closing at once with the client's bytes unread sends
        # a reset, which can destroy the answer before the client reads it. The answer and a
        # FIN go now; what the client still sends is read and dropped until it closes too,
        # LINGER_BYTES have come or LINGER_S has passed (an attacker who keeps sending is cut
        # off after a megabyte).
        self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)


def install(config: ServingConfig) -> None:
    """Make uvicorn's "auto" HTTP protocol (BentoML's choice) this class, with the limits of
    `config`. Called when the service module is imported, before BentoML's worker builds
    uvicorn's Config."""
    if (config.max_header_bytes < 1024 or config.header_timeout_s <= 0
            or config.max_connections < 1):
        raise ValueError("max_header_bytes must be at least 1024, header_timeout_s and "
                         "max_connections positive")
    GuardedHttpToolsProtocol.max_header_bytes = config.max_header_bytes
    GuardedHttpToolsProtocol.header_timeout_s = config.header_timeout_s
    GuardedHttpToolsProtocol.max_connections = config.max_connections
    uvicorn_config.HTTP_PROTOCOLS["auto"] = GUARDED_PROTOCOL
    check()


class GuardUnavailable(RuntimeError):
    """The uvicorn or httptools installed no longer offers what this module relies on."""


def check() -> None:
    """Refuse to start when the installed uvicorn cannot carry these limits (see the module
    docstring): the names exist, "auto" resolves here, and the protocol behaves."""
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(HttpToolsProtocol, m, None))]
    if missing:
        raise GuardUnavailable(f"uvicorn's HttpToolsProtocol has no {missing}: the HTTP "
                               "header limits (service.http_guard) cannot be installed; use "
                               "the uvicorn version pinned in pyproject.toml")
    config = uvicorn_config.Config(app=_PROBE_APP, log_config=None)
    config.load()
    if config.http_protocol_class is not GuardedHttpToolsProtocol:
        raise GuardUnavailable("uvicorn no longer resolves http='auto' through "
                               "uvicorn.config.HTTP_PROTOCOLS: the HTTP header limits "
                               "(service.http_guard) are not in force")
    loop = asyncio.new_event_loop()
    log.disabled = True  # the probe's own refusal is no news
    try:
        small, protocol = _exchange(config, loop, b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        limit = GuardedHttpToolsProtocol.max_header_bytes
        large, _ = _exchange(config, loop, b"GET /x HTTP/1.1\r\nx-big: " + b"a" * limit)
    finally:
        log.disabled = False
        loop.close()
    missing = [name for name in REQUIRED_ATTRIBUTES if not hasattr(protocol, name)]
    if missing:
        raise GuardUnavailable(f"uvicorn's HttpToolsProtocol has no {missing}: the HTTP "
                               "header limits (service.http_guard) cannot work; use the "
                               "uvicorn version pinned in pyproject.toml")
    if not small.startswith(b"HTTP/1.1 200") or not large.startswith(b"HTTP/1.1 431"):
        raise GuardUnavailable(f"uvicorn's HttpToolsProtocol does not behave as "
                               f"service.http_guard expects (a request answered "
                               f"{small[:20]!r}, an oversized head {large[:20]!r})")


async def _ok(request: Request) -> Response:
    return Response(b"")


# The probe's app: a route, as BentoML's app has, so that route labelling runs too.
_PROBE_APP = Starlette(routes=[Route("/x", _ok)])


class ProbeTransport(asyncio.Transport):
    """The least of a transport the protocol uses: what it writes, and whether it closed."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 9999)}.get(
            name, default)

    def write(self, data: bytes) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _exchange(config: uvicorn_config.Config, loop: asyncio.AbstractEventLoop,
              request: bytes) -> tuple[bytes, GuardedHttpToolsProtocol]:
    """What the protocol answers `request` with, on a fake transport, and the protocol."""
    from uvicorn.server import ServerState

    protocol = GuardedHttpToolsProtocol(config=config, server_state=ServerState(),
                                        app_state={}, _loop=loop)
    transport = ProbeTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    for _ in range(10):  # let the request's task run
        loop.run_until_complete(asyncio.sleep(0))
    protocol.connection_lost(None)
    return transport.written, protocol
