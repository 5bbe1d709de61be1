"""`http_tracing`: off by default, BentoML's OpenTelemetry middleware passes requests through
(no span, so the access log carries no trace id); on, every request gets its trace."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.integration.conftest import LiveServer, start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ACCESS_LINE = re.compile(r"path=/classify,.*\(status=200")


def classify_access_lines(server: LiveServer, digit: bytes) -> list[str]:
    httpx.post(server.http_url + "/classify", params={"model": "lenet5"}, content=digit,
               headers={"content-type": "image/png"}, timeout=60).raise_for_status()
    for _ in range(50):  # the access log is written as the response goes out
        lines = [line for line in server.log_tail(400).splitlines() if ACCESS_LINE.search(line)]
        if lines:
            return lines
        time.sleep(0.1)
    raise AssertionError(f"no access log line for /classify:\n{server.log_tail()}")


def test_off_by_default_no_spans(server, digit_pngs):
    lines = classify_access_lines(server, digit_pngs[0][0])
    assert all("trace=" not in line for line in lines), lines[-1]


def test_on_every_request_has_a_trace(tmp_path, digit_pngs):
    traced = start_server(tmp_path, {"default_model": "lenet5", "startup_models": ["lenet5"],
                                     "http_tracing": True})
    try:
        lines = classify_access_lines(traced, digit_pngs[0][0])
        assert re.search(r"trace=[0-9a-f]{32}", lines[-1]), lines[-1]
    finally:
        stop_server(traced)
