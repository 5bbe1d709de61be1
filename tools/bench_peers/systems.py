"""The systems under load: what each one is, how it starts and stops, how a request to it is
encoded, and how the top-1 label is read from its answer.

ConvZoo runs as `make serve` runs it (tools.launch.start_server); the peers (peers.py) are
subprocesses in their own virtual environments. All listen on free 127.0.0.1 ports.

While one system is measured the others are paused (SIGSTOP to every process of theirs),
so that none pays for another's idle work: LitServe's workers poll their queues and keep
about a core busy doing nothing, TorchServe collects system metrics, and so on. Each
system's idle CPU is measured on its own and reported.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psutil

from tools import launch
from tools.bench_peers.photos import Photo
from tools.bench_peers.venvs import onnxruntime_version
from tools.load import PreparedRequest

READY_TIMEOUT_S = 300.0
MODEL = "efficientnet_lite0"


class System(ABC):
    name: str  # the key in the report
    title: str
    server: launch.LiveServer | None = None

    @abstractmethod
    def start(self, workdir: Path) -> None:
        """Start serving; returns once the model answers. `workdir` is the system's own."""

    def stop(self) -> None:
        """Stop every process started (paused ones too); safe when nothing was started."""
        if self.server is None:
            return
        tree = self.processes()
        self.resume()  # a stopped process would hold SIGTERM until continued
        launch.stop_server(self.server)
        # stop_server signals the root's process group; a child in a group of its own
        # (BentoML's workers) outlives a root that had to be killed.
        for process in tree:
            with contextlib.suppress(psutil.Error):
                process.kill()

    def processes(self) -> list[psutil.Process]:
        """The server's process tree (BentoML's workers have process groups of their own)."""
        if self.server is None or self.server.process.poll() is not None:
            return []
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.server.process.pid)
            return [root, *root.children(recursive=True)]
        return []

    def pause(self) -> None:
        for process in self.processes():  # the parent first: it cannot respawn a child
            with contextlib.suppress(psutil.Error):
                process.suspend()

    def resume(self) -> None:
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                process.resume()

    def cpu_seconds(self) -> float:
        """CPU time used so far by the live processes of the server's tree."""
        total = 0.0
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    @contextlib.contextmanager
    def awake(self) -> Iterator[None]:
        """Resumed for the block, paused after it."""
        self.resume()
        try:
            yield
        finally:
            self.pause()

    @abstractmethod
    def prepare(self, photo: Photo) -> PreparedRequest:
        """The request that system's documented HTTP API takes for one photo."""

    @abstractmethod
    def top1(self, answer: Any) -> str:
        """The best label in a decoded JSON answer."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Title, versions, serving layout and request encoding, for the report."""

    def classify_once(self, photo: Photo) -> str:
        request = self.prepare(photo)
        response = httpx.post(request.url, content=request.body, headers=request.headers,
                              timeout=120)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        return self.top1(response.json())


def wait_until(ready: Callable[[], bool], process: subprocess.Popen, log_tail: Callable[[], str],
               what: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll `ready` until it holds; fail with the log's tail if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log_tail()}")
        try:
            if ready():
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} not ready after {timeout:.0f}s:\n{log_tail()}")


def checkout_commit(root: Path) -> str | None:
    """The commit `root` is a checkout of (with -dirty for local changes), or None."""
    def git(*args: str) -> str | None:
        result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None

    # only a checkout's own top: a folder inside some other repository is no checkout
    if git("rev-parse", "--show-toplevel") != str(root):
        return None
    return git("describe", "--always", "--dirty")


class ConvZoo(System):
    """ConvZoo's `bentoml serve`, with a configuration serving efficientnet_lite0 on its
    default batching, or with `instances` model instances (the cores divided among them).
    `root` may be another checkout of the project (an older commit in a git worktree, for
    before/after figures); the model store is shared."""

    name = "convzoo"
    title = "ConvZoo"

    def __init__(self, root: Path = launch.ROOT, instances: int | None = None):
        self.root = root.resolve()
        self.instances = instances
        # The checkout's shipped batching, as `make serve` runs it.
        self.config: dict[str, Any] = {"default_model": MODEL, "startup_models": [MODEL],
                                       **launch.shipped_batching(self.root)}
        if instances is not None:
            self.config["batching"] = {**self.config.get("batching", {}),
                                       "instances": instances}
        self.cwd: str | None = None

    def start(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.server = launch.start_server(workdir, self.config, ready_timeout=READY_TIMEOUT_S,
                                          root=self.root)
        self.cwd = os.readlink(f"/proc/{self.server.process.pid}/cwd")

    def prepare(self, photo: Photo) -> PreparedRequest:
        assert self.server is not None, "start() first"
        return PreparedRequest(self.server.http_url + "/classify", photo.data,
                               {"content-type": photo.content_type})

    def top1(self, answer: Any) -> str:
        return answer["predictions"][0]["label"]

    def describe(self) -> dict[str, Any]:
        versions = {name: metadata.version(name) for name in ("bentoml", "pillow", "numpy")}
        versions["onnxruntime"] = onnxruntime_version()
        return {"title": self.title, "url": self.server and self.server.http_url,
                "root": str(self.root), "served_from": self.cwd,
                "commit": checkout_commit(self.root), "versions": versions,
                "layout": self._layout(),
                "request": "POST /classify, the photo as the raw body (image/jpeg or "
                           "image/png)"}

    def _chosen_layout(self) -> str | None:
        """What the running server chose at start-up (instances, threads, batches), from
        GET /models/{name}; None when it cannot be asked."""
        if self.server is None:
            return None
        try:
            layout = httpx.get(f"{self.server.http_url}/models/{MODEL}", timeout=10
                               ).json()["layout"]
            batches = layout["preferred_batch"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        return (f"default configuration, as chosen at start-up: {layout['instances']} model "
                f"instance(s) x {layout['threads_per_instance']} ONNX Runtime thread(s) "
                f"(by {layout['chosen_by']}), batches of up to {batches['size']} "
                f"(by {batches['chosen_by']}; largest {layout['batch_size']})")

    def _layout(self) -> str:
        instances = "" if self.instances is None else f", {self.instances} model instance(s)"
        if self.root != launch.ROOT:
            return f"that checkout's default configuration{instances}"
        chosen = self._chosen_layout()
        if chosen:
            return chosen
        from service.core.config import BatchingConfig, ServingConfig

        batching = BatchingConfig(**self.config.get("batching", {}))
        config = ServingConfig(default_model=MODEL, startup_models=(MODEL,), batching=batching)
        return (f"{'default configuration' if not instances else 'configuration'}: "
                f"{batching.instances} model instance(s) x "
                f"{config.threads_for(MODEL)} ONNX Runtime thread(s), max batch "
                f"{batching.max_batch_size}, max delay {batching.max_delay_ms:g} ms")
