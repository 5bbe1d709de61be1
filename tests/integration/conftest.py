"""A real ConvZoo server process (BentoML REST + gRPC) on free ports, shared by the session.

Tests talk to it over loopback only. It serves the embedded default models, which `make
test` imports beforehand (`python -m model_store pull --if-missing`).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.fixtures.tls import self_signed_certificate
from tools.launch import (  # noqa: F401  (re-exported for the test modules)
    BENTOML,
    ROOT,
    LiveServer,
    start_server,
    stop_server,
)

DEFAULT_TEST_CONFIG = {
    "default_model": "efficientnet_lite0",
    "startup_models": ["efficientnet_lite0", "efficientnet_lite1", "lenet5"],
    # A generous delay makes concurrent requests visibly share batches.
    "batching": {"max_batch_size": 16, "max_delay_ms": 25, "max_queue": 256, "instances": 1},
    "per_model_batching": {"lenet5": {"max_batch_size": 64, "max_delay_ms": 25}},
    "ensembles": {"lite-pair": {"models": ["efficientnet_lite0", "efficientnet_lite1"],
                                "method": "mean"}},
}


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> LiveServer:
    live = start_server(tmp_path_factory.mktemp("server"), DEFAULT_TEST_CONFIG)
    yield live
    stop_server(live)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost, and its key."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def http(server: LiveServer) -> httpx.Client:
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        yield client
