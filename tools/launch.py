"""Start and stop a real ConvZoo server process (`bentoml serve`) on free loopback ports.

Used by the benchmarks, the soak run and the integration tests, so that all of them measure
the service exactly as `make serve` runs it: REST and gRPC in one BentoML worker, with a
configuration file of their own and a BentoML home of their own that shares the model store.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
BENTOML = Path(sys.executable).parent / "bentoml"


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that nothing listens on, on every interface (gRPC binds [::]).

    Taken below the kernel's ephemeral range, where client connections get their local
    ports: a port from that range could be taken by some connection before the server,
    which binds only after its models load, gets to it. All sockets are held until every
    port is chosen, so the HTTP and gRPC ports cannot come out the same."""
    low_ephemeral = _ephemeral_range()[0]
    below = range(20000, low_ephemeral)
    # Port 0 (the kernel's choice, in the ephemeral range) where nothing lies below it.
    candidates = (random.sample(below, k=min(200, len(below))) if len(below) >= count
                  else [0] * count)
    held: list[socket.socket] = []
    try:
        for port in candidates:
            sock = socket.socket()
            try:
                sock.bind(("", port))
            except OSError:
                sock.close()
                continue
            held.append(sock)
            if len(held) == count:
                return [s.getsockname()[1] for s in held]
        raise RuntimeError(f"no {count} free ports below the ephemeral range ({low_ephemeral})")
    finally:
        for sock in held:
            sock.close()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


@dataclass
class LiveServer:
    http_url: str
    grpc_target: str
    process: subprocess.Popen
    log_path: Path
    config: dict

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def model_status(self, name: str) -> dict:
        """`GET /models/{name}`: the model's status as the server reports it (its weights,
        execution, the layout and batches its start chose)."""
        response = httpx.get(f"{self.http_url}/models/{name}", timeout=30)
        response.raise_for_status()
        return response.json()


def start_server(workdir: Path, config: dict, ready_timeout: float = 240.0,
                 check_store: bool = True, wait_ready: bool = True,
                 extra_args: tuple[str, ...] = (), scheme: str = "http",
                 root: Path = ROOT, bentoml_home: Path | None = None) -> LiveServer:
    """Start `bentoml serve` with `config`; BENTOML_HOME (the model store) is inherited.

    `root` is the checkout whose service runs (another one, e.g. an older commit's git
    worktree, for before/after benchmarks: its code, this one's virtual environment).

    Returns once /readyz answers 200, or with `wait_ready=False` once the server answers
    /livez (for servers that are meant never to be ready). `extra_args` go to `bentoml
    serve` (e.g. --ssl-certfile/--ssl-keyfile, with `scheme="https"`). The server gets a
    BentoML home of its own that shares the model store, unless `bentoml_home` names the
    one to use as it is (as two `make serve` on one checkout would share one)."""
    from model_store import repository

    # Only when asked: listing the store here pins this process's BentoML home to the
    # current BENTOML_HOME, which servers on a store of their own must not do.
    missing = ([m for m in config["startup_models"] if m not in repository.stored_status()]
               if check_store else [])
    if missing:
        raise RuntimeError(f"models {missing} are not in the store; run `make models` first")
    http_port, grpc_port = free_ports(2)
    config = {**config, "grpc_port": config.get("grpc_port") or grpc_port}
    config_path = workdir / "convzoo.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / "server.log"
    # A BentoML home of its own, sharing the model store: `bentoml serve` empties
    # $BENTOML_HOME/prometheus_multiproc_dir at start, where every server on that home keeps
    # its metrics (the service refuses to start while another one writes there).
    home = bentoml_home or home_sharing_store(workdir / "bentoml-home")
    env = {**os.environ, "CONVZOO_CONFIG": str(config_path), "PYTHONUNBUFFERED": "1",
           "BENTOML_HOME": str(home)}
    if root != ROOT:
        env["PYTHONPATH"] = str(root)
    with open(log_path, "wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [str(BENTOML), "serve", "service.service:ConvZoo", "--host", "127.0.0.1",
             "--port", str(http_port), *extra_args],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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


def shipped_batching(root: Path = ROOT) -> dict:
    """The batching sections of `root`'s shipped service/config.yaml: benchmarks serve one
    model, but batch as `make serve` of that checkout does."""
    path = root / "service" / "config.yaml"
    raw = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
    return {key: raw[key] for key in ("batching", "per_model_batching") if key in raw}


def home_sharing_store(home: Path) -> Path:
    """`home` made a BentoML home whose model store is the current BENTOML_HOME's."""
    home.mkdir(parents=True, exist_ok=True)
    # Absolute: the link is read from the server's home, where a relative path means nothing.
    store_models = Path(os.environ["BENTOML_HOME"]).resolve() / "models"
    store_models.mkdir(parents=True, exist_ok=True)
    link = home / "models"
    if link.is_symlink() and link.resolve() != store_models:
        link.unlink()  # a link to another store, or a dangling one
    if not link.exists():
        link.symlink_to(store_models, target_is_directory=True)
    return home


def stop_server(server: LiveServer) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(10)
