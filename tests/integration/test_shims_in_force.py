"""The running server uses what we think it uses, where ConvZoo relies on something BentoML or
uvicorn does not document (docs/architecture.md lists every such place):

- the request-time bound is ConvZoo's own middleware (`service.time_limit`), and BentoML's
  timeout middleware is a pass-through (`service.bentoml_timeout`): BentoML's `traffic.timeout`
  is configured to the same bound and its timer would be scheduled first, so a held request
  answered with ConvZoo's error body shows BentoML's timeout is not in force;
- the HTTP protocol uvicorn runs is `service.http_guard`'s (an oversized head gets its 431);
- HTTP metrics carry route templates, not the paths clients invent (`service.route_labels`).

One small server of its own (LeNet-5, a 2 s request bound, a 4 KiB head limit).
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.integration.conftest import LiveServer, start_server, stop_server

pytestmark = pytest.mark.integration

BOUND_S = 2


@pytest.fixture(scope="module")
def bounded_server(tmp_path_factory) -> LiveServer:
    live = start_server(tmp_path_factory.mktemp("shims"), {
        "default_model": "lenet5", "startup_models": ["lenet5"],
        "batching": {"max_batch_size": 4, "instances": 1},
        "request_timeout_s": BOUND_S, "max_header_bytes": 4096})
    yield live
    stop_server(live)


def raw_exchange(server: LiveServer, request: bytes, wait_s: float) -> bytes:
    """What the server answers `request` (sent as is) within `wait_s`."""
    port = int(server.http_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as connection:
        connection.sendall(request)
        answer = b""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and b"\r\n\r\n" not in answer:
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length and time.monotonic() < deadline:
            body += connection.recv(65536)
        return head + b"\r\n\r\n" + body


def test_a_request_held_past_the_bound_gets_conzoos_504_not_bentomls(bounded_server):
    # A body that never finishes arriving: nothing answers it but a request-time bound.
    started = time.monotonic()
    answer = raw_exchange(bounded_server, b"POST /classify HTTP/1.1\r\nhost: x\r\n"
                          b"content-type: image/png\r\ncontent-length: 1000\r\n\r\n"
                          b"\x89PNG\r\n", wait_s=BOUND_S + 20)
    waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 504"), answer[:200]
    # ConvZoo's error body; BentoML's would be {"error": "Not able to process the request in 2
    # seconds"}.
    assert b'"code":"deadline_exceeded"' in answer and b"request_timeout_s" in answer
    assert BOUND_S - 0.5 <= waited < BOUND_S + 15


def test_the_http_protocol_is_the_guarded_one(bounded_server):
    answer = raw_exchange(bounded_server, b"GET /livez HTTP/1.1\r\nhost: x\r\nx-big: "
                          + b"a" * 8192 + b"\r\n\r\n", wait_s=10)
    assert answer.startswith(b"HTTP/1.1 431") and b"header_too_large" in answer


def test_http_metrics_carry_route_templates_not_invented_paths(bounded_server):
    with httpx.Client(base_url=bounded_server.http_url, timeout=30) as http:
        assert http.get("/no/such/path-4d2a").status_code == 404
        assert http.get("/models/invented-model-4d2a").status_code == 404
        metrics = http.get("/metrics").text
    assert "4d2a" not in metrics
    assert 'endpoint="/models/{name}"' in metrics and "__unmatched__" in metrics
