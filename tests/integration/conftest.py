"""A real ConvZoo server process (BentoML REST + gRPC) on free ports, shared by the session.

Tests talk to it over loopback only. It serves the embedded default models, which `make
test` imports beforehand (`python -m model_store pull --if-missing`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BENTOML = Path(sys.executable).parent / "bentoml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    http_url: str
    grpc_target: str
    process: subprocess.Popen
    log_path: Path
    config: dict

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_server(workdir: Path, config: dict, ready_timeout: float = 240.0,
                 check_store: bool = True, wait_ready: bool = True,
                 extra_args: tuple[str, ...] = (), scheme: str = "http") -> LiveServer:
    """Start `bentoml serve` with `config`; BENTOML_HOME (the model store) is inherited.

    Returns once /readyz answers 200, or with `wait_ready=False` once the server answers
    /livez (for servers that are meant never to be ready). `extra_args` go to `bentoml
    serve` (e.g. --ssl-certfile/--ssl-keyfile, with `scheme="https"`)."""
    from model_store import store

    missing = [m for m in config["startup_models"] if m not in store.stored_status()]
    if check_store and missing:
        pytest.fail(f"models {missing} are not in the store; run `make models` first")
    http_port = free_port()
    config = {**config, "grpc_port": config.get("grpc_port") or free_port()}
    config_path = workdir / "convzoo.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / "server.log"
    # A BentoML home of its own, sharing the model store: `bentoml serve` empties
    # $BENTOML_HOME/prometheus_multiproc_dir at start, which would wipe the metrics of any
    # other server running on the same home.
    home = workdir / "bentoml-home"
    home.mkdir(exist_ok=True)
    store_models = Path(os.environ["BENTOML_HOME"]) / "models"
    store_models.mkdir(parents=True, exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(store_models, target_is_directory=True)
    env = {**os.environ, "CONVZOO_CONFIG": str(config_path), "PYTHONUNBUFFERED": "1",
           "BENTOML_HOME": str(home)}
    with open(log_path, "wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [str(BENTOML), "serve", "service.service:ConvZoo", "--host", "127.0.0.1",
             "--port", str(http_port), *extra_args],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = LiveServer(f"{scheme}://127.0.0.1:{http_port}", f"127.0.0.1:{config['grpc_port']}",
                        process, log_path, config)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log_tail()}")
        try:
            probe = "/readyz" if wait_ready else "/livez"
            # the probe only waits for the server; TLS tests check certificates themselves
            if httpx.get(server.http_url + probe, timeout=2, verify=False).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(server)
    raise RuntimeError(f"server not ready after {ready_timeout}s:\n{server.log_tail()}")


def stop_server(server: LiveServer) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(10)


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


@pytest.fixture
def http(server: LiveServer) -> httpx.Client:
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        yield client
