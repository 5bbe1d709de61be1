"""The serving systems users would pick instead of ConvZoo, each serving the same ONNX file
with the same handler code (servers/classifier.py) through its own documented API:
plain BentoML, LitServe, TorchServe and PyTriton (Triton Inference Server).

Each runs as a subprocess group in its own virtual environment (venvs.py), on free loopback
ports, with the layout a user would choose for this machine's cores (`PeerSettings`) and the
dynamic batching the system offers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from abc import abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from service.oip_codec import encode_bytes_elements
from tools import launch
from tools.bench_peers.photos import Photo
from tools.bench_peers.systems import MODEL, System, wait_until
from tools.bench_peers.venvs import PeerEnvironment, shared_requirements
from tools.load import PreparedRequest

SERVERS = Path(__file__).resolve().parent / "servers"


@dataclass(frozen=True)
class PeerSettings:
    workers: int  # model copies (processes or Triton instances), each with its own session
    threads: int  # ONNX Runtime intra-op threads per copy
    max_batch_size: int
    batch_delay_ms: float  # the longest a request waits for a batch to fill


def multipart(field: str, photo: Photo) -> tuple[bytes, str]:
    """A multipart/form-data body with one file field, and its content type (RFC 7578)."""
    boundary = "convzoo-bench-peers-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{photo.filename}\"\r\nContent-Type: {photo.content_type}\r\n\r\n")
    body = head.encode() + photo.data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class PeerServer(System):
    ports_needed = 1
    distributions: tuple[str, ...] = ()  # whose versions the report gives
    request_encoding: str

    def __init__(self, settings: PeerSettings, model: dict[str, Any], venv_root: Path):
        self.settings = settings
        self.model = model  # the ONNX file, labels and preprocessing (see classifier.py)
        self.environment = PeerEnvironment(venv_root, self.name, self.requirements())
        self.ports: list[int] = []

    def requirements(self) -> list[str] | None:
        """pip requirements of the peer's own environment; None: ConvZoo's environment."""
        return None

    def problem(self) -> str | None:
        """What keeps the peer from starting on this machine, with how to fix it, or None."""
        return self.environment.problem()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    @abstractmethod
    def command(self, workdir: Path) -> tuple[list[str], Path, dict[str, str]]:
        """The server's command line, working directory and added environment."""

    @abstractmethod
    def ready(self) -> bool:
        """Whether the model answers (the system's own readiness probe)."""

    def start(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config_path = workdir / "peer.json"
        config_path.write_text(json.dumps({**self.model, **asdict(self.settings)}))
        self.ports = launch.free_ports(self.ports_needed)
        command, cwd, extra_env = self.command(workdir)
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env.update(PEER_CONFIG=str(config_path), PYTHONUNBUFFERED="1", **extra_env)
        log_path = workdir / "server.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        # The launcher's record of a live server process, so that it stops the same way.
        self.server = launch.LiveServer(self.url, "", process, log_path, {})
        try:
            wait_until(self.ready, process, self.server.log_tail, self.title)
        except BaseException:
            self.stop()
            raise

    def describe(self) -> dict[str, Any]:
        return {"title": self.title, "url": self.url, "versions": self.environment.versions(
                    [*self.distributions, "onnxruntime", "onnxruntime-gpu", "pillow", "numpy"]),
                "layout": self.layout(), "request": self.request_encoding}

    @abstractmethod
    def layout(self) -> str:
        """Model copies, threads and batching, as that system's configuration says them."""


class BentoMLPeer(PeerServer):
    name, title = "bentoml", "BentoML (plain service)"
    distributions = ("bentoml",)
    request_encoding = "POST /classify, multipart/form-data field `images`"

    def command(self, workdir: Path) -> tuple[list[str], Path, dict[str, str]]:
        # A BentoML home of its own: `bentoml serve` empties its metrics folder at start.
        home = workdir / "bentoml-home"
        home.mkdir(exist_ok=True)
        return ([str(self.environment.bin("bentoml")), "serve", "bentoml_peer:PeerClassifier",
                 "--host", "127.0.0.1", "--port", str(self.ports[0])], SERVERS,
                {"BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"})

    def ready(self) -> bool:
        return httpx.get(self.url + "/readyz", timeout=2).status_code == 200

    def prepare(self, photo: Photo) -> PreparedRequest:
        body, content_type = multipart("images", photo)
        return PreparedRequest(self.url + "/classify", body, {"content-type": content_type})

    def top1(self, answer: Any) -> str:
        return answer[0][0]["label"]  # a batchable API answers a list, one item per image

    def layout(self) -> str:
        return (f"@bentoml.service(workers={self.settings.workers}), ONNX Runtime "
                f"{self.settings.threads} thread(s) each; @bentoml.api(batchable=True, "
                f"max_batch_size={self.settings.max_batch_size}), BentoML's adaptive batching "
                "(default max_latency_ms)")


class LitServePeer(PeerServer):
    name, title = "litserve", "LitServe"
    distributions = ("litserve", "fastapi", "uvicorn")
    request_encoding = "POST /predict, multipart/form-data field `image`"

    def requirements(self) -> list[str]:
        # python-multipart: FastAPI's form parser, which LitServe's uploads need.
        return ["litserve==0.2.19", "python-multipart==0.0.34", *shared_requirements()]

    def command(self, workdir: Path) -> tuple[list[str], Path, dict[str, str]]:
        return [str(self.environment.python), "litserve_peer.py", str(self.ports[0])], SERVERS, {}

    def ready(self) -> bool:
        return httpx.get(self.url + "/health", timeout=2).status_code == 200

    def prepare(self, photo: Photo) -> PreparedRequest:
        body, content_type = multipart("image", photo)
        return PreparedRequest(self.url + "/predict", body, {"content-type": content_type})

    def top1(self, answer: Any) -> str:
        return answer["predictions"][0]["label"]

    def layout(self) -> str:
        return (f"LitServer(accelerator='cpu', workers_per_device={self.settings.workers}), "
                f"ONNX Runtime {self.settings.threads} thread(s) each; LitAPI(max_batch_size="
                f"{self.settings.max_batch_size}, batch_timeout="
                f"{self.settings.batch_delay_ms / 1000:g})")


class TorchServePeer(PeerServer):
    name, title = "torchserve", "TorchServe"
    ports_needed = 3  # inference, management, metrics
    distributions = ("torchserve", "torch-model-archiver", "torch")
    request_encoding = f"POST /predictions/{MODEL}, the photo as the raw body"

    def requirements(self) -> list[str]:
        # TorchServe's Python worker imports torch even for a handler that does not use it
        # (torch 2.13.0 is the CPU build on this machine's disk), and PyYAML, undeclared.
        return ["torchserve==0.12.0", "torch-model-archiver==0.12.0", "torch==2.13.0",
                "pyyaml", *shared_requirements()]

    def problem(self) -> str | None:
        java = shutil.which("java")
        if java is None:
            return ("torchserve: needs Java 17 or newer and there is no `java` on PATH; "
                    "install it with `apt-get install -y openjdk-17-jre-headless`")
        version = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
        found = re.search(r'version "(\d+)', version)
        if found is None or int(found.group(1)) < 17:
            return (f"torchserve: needs Java 17 or newer, found {version.splitlines()[:1]}; "
                    "install it with `apt-get install -y openjdk-17-jre-headless`")
        return super().problem()

    def command(self, workdir: Path) -> tuple[list[str], Path, dict[str, str]]:
        store = workdir / "model-store"
        store.mkdir(exist_ok=True)
        subprocess.run([str(self.environment.bin("torch-model-archiver")), "--model-name", MODEL,
                        "--version", "1.0", "--handler", str(SERVERS / "torchserve_handler.py"),
                        "--extra-files", str(SERVERS / "classifier.py"), "--export-path",
                        str(store), "--archive-format", "no-archive", "--force"], check=True)
        inference, management, metrics = self.ports
        # In config.properties a maxBatchDelay of 0 means "unset" (TorchServe's default,
        # 100 ms): 1 ms is the least wait it can be given.
        delay_ms = max(1, round(self.settings.batch_delay_ms))
        models = {MODEL: {"1.0": {
            "defaultVersion": True, "marName": MODEL, "minWorkers": self.settings.workers,
            "maxWorkers": self.settings.workers, "batchSize": self.settings.max_batch_size,
            "maxBatchDelay": delay_ms, "responseTimeout": 120}}}
        config = workdir / "config.properties"
        config.write_text("\n".join([
            f"inference_address=http://127.0.0.1:{inference}",
            f"management_address=http://127.0.0.1:{management}",
            f"metrics_address=http://127.0.0.1:{metrics}",
            # the default 6.5 MB would refuse large photos
            "max_request_size=67108864", "max_response_size=67108864",
            f"model_store={store}", f"load_models={MODEL}", f"models={json.dumps(models)}",
            ""]))
        path = f"{self.environment.python.parent}{os.pathsep}{os.environ.get('PATH', '')}"
        return ([str(self.environment.bin("torchserve")), "--foreground", "--ncs",
                 "--disable-token-auth", "--model-store", str(store), "--ts-config",
                 str(config)], workdir, {"PATH": path})

    def ready(self) -> bool:
        answer = httpx.get(f"http://127.0.0.1:{self.ports[1]}/models/{MODEL}", timeout=2)
        workers = answer.json()[0]["workers"] if answer.status_code == 200 else []
        return (len(workers) == self.settings.workers
                and all(worker["status"] == "READY" for worker in workers))

    def prepare(self, photo: Photo) -> PreparedRequest:
        return PreparedRequest(f"{self.url}/predictions/{MODEL}", photo.data,
                               {"content-type": photo.content_type})

    def top1(self, answer: Any) -> str:
        return answer["predictions"][0]["label"]

    def layout(self) -> str:
        return (f"{self.settings.workers} worker(s) (minWorkers=maxWorkers), ONNX Runtime "
                f"{self.settings.threads} thread(s) each; batchSize="
                f"{self.settings.max_batch_size}, maxBatchDelay="
                f"{max(1, round(self.settings.batch_delay_ms))} ms")


class PyTritonPeer(PeerServer):
    name, title = "pytriton", "Triton (PyTriton)"
    ports_needed = 3  # HTTP, gRPC, metrics
    distributions = ("nvidia-pytriton", "tritonclient")
    request_encoding = (f"POST /v2/models/{MODEL}/infer (KServe v2), the photo as a BYTES "
                        "input in the binary-data extension, JSON outputs")

    def requirements(self) -> list[str]:
        # nvidia-pytriton 0.7.0 requires numpy < 2: its own pick, not ConvZoo's version.
        return ["nvidia-pytriton==0.7.0", *shared_requirements(pin_numpy=False)]

    def command(self, workdir: Path) -> tuple[list[str], Path, dict[str, str]]:
        # Triton's python-backend stub links libpython3.x.so by name; on a machine whose
        # system libpython is another patch release than the environment's interpreter (a
        # pyenv Python here) it loads the system one and fails in multiprocessing
        # ("'_thread.RLock' object has no attribute '_recursion_count'"). The interpreter's
        # own library directory first on the search path makes the two match.
        libdir = subprocess.run([str(self.environment.python), "-c",
                                 "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
                                capture_output=True, text=True, check=True).stdout.strip()
        search = os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p)
        return ([str(self.environment.python), "pytriton_peer.py", *map(str, self.ports)],
                SERVERS, {"LD_LIBRARY_PATH": search})

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/v2/models/{MODEL}/ready", timeout=2).status_code == 200

    def prepare(self, photo: Photo) -> PreparedRequest:
        raw = encode_bytes_elements([photo.data])
        header = json.dumps({
            "inputs": [{"name": "image", "shape": [1, 1], "datatype": "BYTES",
                        "parameters": {"binary_data_size": len(raw)}}],
            "outputs": [{"name": name, "parameters": {"binary_data": False}}
                        for name in ("labels", "scores")]}).encode()
        return PreparedRequest(f"{self.url}/v2/models/{MODEL}/infer", header + raw,
                               {"content-type": "application/octet-stream",
                                "inference-header-content-length": str(len(header))})

    def top1(self, answer: Any) -> str:
        labels = next(output for output in answer["outputs"] if output["name"] == "labels")
        return labels["data"][0]

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        if self.server is not None:  # the Triton server inside the wheel
            described["versions"]["tritonserver"] = httpx.get(self.url + "/v2",
                                                              timeout=5).json()["version"]
        return described

    def layout(self) -> str:
        return (f"{self.settings.workers} model instance(s) (one inference callable each), "
                f"ONNX Runtime {self.settings.threads} thread(s) each; Triton's dynamic "
                f"batcher, max_batch_size={self.settings.max_batch_size}, "
                f"max_queue_delay_microseconds={round(self.settings.batch_delay_ms * 1000)}")


PEERS: dict[str, type[PeerServer]] = {
    peer.name: peer for peer in (BentoMLPeer, LitServePeer, TorchServePeer, PyTritonPeer)}
