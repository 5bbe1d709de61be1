"""The request-head and connection limits (service.http_guard) on a real uvicorn server on
127.0.0.1, with raw sockets; and the start-up check that guards the uvicorn names they rely on
(it fails here when an upgrade changes them)."""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time

import pytest
import uvicorn
from uvicorn import config as uvicorn_config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service import http_guard
from service.core.config import load_config
from service.http_guard import GuardedHttpToolsProtocol, GuardUnavailable

LIMIT = 4096
HEAD_TIMEOUT_S = 0.5
MAX_CONNECTIONS = 6


class Limited(GuardedHttpToolsProtocol):
    max_header_bytes = LIMIT
    header_timeout_s = HEAD_TIMEOUT_S
    max_connections = MAX_CONNECTIONS


async def app(scope, receive, send):
    """Reads the whole body and answers its length."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def address():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=Limited, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield sock.getsockname()
    server.should_exit = True
    thread.join(10)


def connect(address) -> socket.socket:
    conn = socket.create_connection(address, timeout=5)
    return conn


def read_all(conn: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything until the server closes the connection."""
    conn.settimeout(timeout)
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def post(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: t\r\ncontent-length: {len(body)}\r\n\r\n".encode()
            + body)


def test_a_normal_request_is_served(address):
    with connect(address) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        assert read_all(conn).startswith(b"HTTP/1.1 200")


def test_whole_requests_in_one_read_on_a_kept_alive_connection_are_not_heads(address):
    # Head and a 200 kB body sent at once, twice: neither the body nor the whole request
    # counts toward the head limit (a first version counted it when the request completed
    # within the read).
    body = b"x" * 200_000
    with connect(address) as conn:
        for _ in range(3):
            conn.sendall(post("/a", body))
            reply = b""
            while not reply.endswith(b"200000") and (chunk := conn.recv(65536)):
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200"), reply[:100]


def test_pipelined_requests_are_served(address):
    with connect(address) as conn:
        conn.sendall(post("/a", b"abc") + post("/b", b"defg") +
                     b"GET /c HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        replies = read_all(conn)
    assert replies.count(b"HTTP/1.1 200") == 3


def test_a_head_that_never_ends_gets_431_and_is_closed_at_once(address):
    started = time.monotonic()
    with connect(address) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nhost: t\r\nx-big: ")
        sent = 0
        try:
            for _ in range(64):  # up to 64 MiB, as the attack would
                conn.sendall(b"a" * (1 << 20))
                sent += 1 << 20
        except OSError:  # the server closed the connection under us
            pass
        reply = read_all(conn)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:100]
    assert b'"header_too_large"' in reply and b"connection: close" in reply
    assert sent < 16 << 20  # refused long before the attack's end
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("where", ["url", "header"])
def test_a_head_over_the_limit_in_one_read_gets_431(address, where):
    big = "a" * (LIMIT + 10)
    head = (f"GET /{big} HTTP/1.1\r\nhost: t\r\n\r\n" if where == "url"
            else f"GET / HTTP/1.1\r\nhost: t\r\nx-big: {big}\r\n\r\n")
    with connect(address) as conn:
        conn.sendall(head.encode())
        assert read_all(conn).startswith(b"HTTP/1.1 431")


def test_a_head_under_the_limit_is_served(address):
    with connect(address) as conn:
        conn.sendall(f"GET / HTTP/1.1\r\nhost: t\r\nx-ok: {'a' * (LIMIT - 200)}\r\n"
                     "connection: close\r\n\r\n".encode())
        assert read_all(conn).startswith(b"HTTP/1.1 200")


def test_a_connection_that_sends_nothing_is_closed_quietly(address):
    with connect(address) as conn:
        started = time.monotonic()
        assert read_all(conn) == b""
        assert HEAD_TIMEOUT_S * 0.8 < time.monotonic() - started < HEAD_TIMEOUT_S + 2


def test_half_a_head_gets_408_and_is_closed(address):
    with connect(address) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nhost: t\r\n")
        started = time.monotonic()
        reply = read_all(conn)
        assert reply.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in reply
        assert time.monotonic() - started < HEAD_TIMEOUT_S + 2


def test_a_slow_head_is_timed_from_its_first_byte(address):
    # One byte every 0.1 s: it never stalls, but the head is not complete in time.
    with connect(address) as conn:
        started = time.monotonic()
        for byte in b"GET / HTTP/1.1\r\nhost: " + b"t" * 100:
            if select.select([conn], [], [], 0)[0]:  # answered
                break
            conn.sendall(bytes([byte]))
            time.sleep(0.1)
        assert read_all(conn).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < HEAD_TIMEOUT_S + 2


def test_past_max_connections_a_new_connection_gets_503(address):
    held = [connect(address) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.1)
        with connect(address) as extra:
            reply = read_all(extra)
        assert reply.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in reply
    finally:
        for conn in held:
            conn.close()
    time.sleep(0.2)
    with connect(address) as conn:  # room again once they are gone
        conn.sendall(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        assert read_all(conn).startswith(b"HTTP/1.1 200")


# --- the start-up check ----------------------------------------------------------------------

@pytest.fixture
def restore_protocols():
    saved = dict(uvicorn_config.HTTP_PROTOCOLS)
    saved_limits = (GuardedHttpToolsProtocol.max_header_bytes,
                    GuardedHttpToolsProtocol.header_timeout_s,
                    GuardedHttpToolsProtocol.max_connections)
    yield
    uvicorn_config.HTTP_PROTOCOLS.clear()
    uvicorn_config.HTTP_PROTOCOLS.update(saved)
    (GuardedHttpToolsProtocol.max_header_bytes, GuardedHttpToolsProtocol.header_timeout_s,
     GuardedHttpToolsProtocol.max_connections) = saved_limits


def test_install_makes_uvicorns_auto_protocol_the_guarded_one(restore_protocols, tmp_path):
    http_guard.install(load_config(tmp_path / "none.yaml", max_header_bytes=8192))
    config = uvicorn.Config(app=app)
    config.load()
    assert config.http_protocol_class is GuardedHttpToolsProtocol
    assert GuardedHttpToolsProtocol.max_header_bytes == 8192


def test_the_uvicorn_names_relied_on_exist():
    for name in http_guard.REQUIRED_METHODS:
        assert callable(getattr(HttpToolsProtocol, name, None)), name
    config = uvicorn.Config(app=app)
    config.load()
    from uvicorn.server import ServerState

    loop = asyncio.new_event_loop()
    try:
        protocol = HttpToolsProtocol(config=config, server_state=ServerState(), app_state={},
                                     _loop=loop)
        protocol.connection_made(http_guard.ProbeTransport())
        protocol.on_message_begin()
        for name in http_guard.REQUIRED_ATTRIBUTES:
            assert hasattr(protocol, name), name
    finally:
        loop.close()


def test_the_check_refuses_a_uvicorn_that_no_longer_resolves_auto_here(restore_protocols,
                                                                          tmp_path):
    http_guard.install(load_config(tmp_path / "none.yaml"))
    uvicorn_config.HTTP_PROTOCOLS["auto"] = "uvicorn.protocols.http.auto:AutoHTTPProtocol"
    with pytest.raises(GuardUnavailable, match="HTTP_PROTOCOLS"):
        http_guard.check()


def test_the_check_refuses_a_protocol_without_an_attribute_it_uses(restore_protocols,
                                                                    tmp_path, monkeypatch):
    http_guard.install(load_config(tmp_path / "none.yaml"))
    monkeypatch.setattr(http_guard, "REQUIRED_ATTRIBUTES", (*http_guard.REQUIRED_ATTRIBUTES,
                                                            "renamed_in_an_upgrade"))
    with pytest.raises(GuardUnavailable, match="renamed_in_an_upgrade"):
        http_guard.check()


def test_the_check_refuses_a_protocol_that_does_not_enforce_the_limit(restore_protocols,
                                                                      tmp_path, monkeypatch):
    http_guard.install(load_config(tmp_path / "none.yaml"))
    # As if an upgrade stopped calling data_received's parser path the way we expect.
    monkeypatch.setattr(GuardedHttpToolsProtocol, "data_received",
                        HttpToolsProtocol.data_received)
    with pytest.raises(GuardUnavailable, match="does not behave"):
        http_guard.check()
