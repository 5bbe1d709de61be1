"""Serving configuration: which models load at start-up, backend, batching, limits, access
(API keys, gRPC TLS).

Read from a YAML file (`CONVZOO_CONFIG`, default `service/config.yaml`); every key has a
default so an empty file serves the embedded default models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.yaml"


@dataclass(frozen=True)
class BatchingConfig:
    max_batch_size: int = 16
    # No added wait by default (as Triton): batches form from requests that queue while the
    # previous batch runs. A few ms more trades single-request latency for fuller batches.
    max_delay_ms: float = 0.0
    max_queue: int = 256  # images waiting per model before requests are shed
    # Batches of one model that run at the same time (Triton's instance count). The cores
    # are divided among them (see ServingConfig.threads): on CPU, more instances with fewer
    # threads each trade single-request latency for throughput under load.
    instances: int = 1


@dataclass(frozen=True)
class ServingConfig:
    default_model: str = "efficientnet_lite0"
    startup_models: tuple[str, ...] = ("efficientnet_lite0", "lenet5")
    backend: str = "onnxruntime"  # or "pytorch"
    device: str = "auto"  # "auto" picks CUDA when present
    # Intra-op threads per model instance; None: the cores divided among the instances, so
    # that two instances on two cores do not fight over four threads.
    threads: int | None = None
    # ONNX Runtime's intra-op threads busy-wait for work (its own default): worth it only
    # on cores that do nothing but inference.
    intra_op_spinning: bool = False
    batching: BatchingConfig = BatchingConfig()
    per_model_batching: dict[str, BatchingConfig] = field(default_factory=dict)
    memory_budget_mb: float = 6144.0  # loaded models beyond this evict the least recent idle one
    lazy_load: bool = True
    allow_random_init: bool = True  # serve random-init models (marked so) if that is all there is
    max_image_pixels: int = 40_000_000
    max_body_bytes: int = 64 * 1024 * 1024
    max_images_per_request: int = 64
    max_top_k: int = 1000
    ensembles: dict[str, dict[str, Any]] = field(default_factory=dict)
    grpc_port: int = 3001
    grpc_max_message_bytes: int = 64 * 1024 * 1024
    # TLS for the gRPC port (PEM files); REST's TLS is `bentoml serve --ssl-certfile/-keyfile`.
    grpc_tls_cert: str | None = None
    grpc_tls_key: str | None = None
    # API keys (bearer tokens) on REST and gRPC; none configured means authentication is off.
    # A file (one key a line) keeps them out of the config, e.g. a mounted secret.
    api_keys: tuple[str, ...] = ()
    api_keys_file: str | None = None
    # REST paths answered without a key: probes and scrapes carry none. A trailing "*" matches
    # a prefix. gRPC's health service is always open.
    open_paths: tuple[str, ...] = ("/livez", "/readyz", "/metrics")
    # BentoML's OpenTelemetry middleware makes spans for every HTTP request even when none is
    # sampled (its default sample rate is 0): a quarter of the event loop's time per REST
    # request here. Turn this on together with BentoML's `tracing` (exporter, sample_rate).
    http_tracing: bool = False
    # Hostile clients (docs/reliability.md, issue 14). A request head (request line and
    # headers) longer than max_header_bytes is answered 431 and its connection closed; a head
    # not complete within header_timeout_s, or a connection that sends nothing for as long, is
    # closed. 64 KiB is four times Node's limit; 10 s lets a 64 kbit/s link send a full head.
    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0
    # Open HTTP connections past this are answered 503 and closed: with max_header_bytes it
    # bounds what partial request heads can hold (2048 x 64 KiB = 128 MiB).
    max_connections: int = 2048
    # A request body not received in full within this, from its first read, is answered 408
    # and its connection closed (a stalled upload): 120 s carries a 64 MiB body at 5 Mbit/s.
    body_timeout_s: float = 120.0
    # Request body bytes held by all requests together; past it new bodies get 503 with
    # Retry-After. None: four uploads of the largest size at once (4 x max_body_bytes), and
    # never under 256 MiB, so that a small per-request limit does not refuse ordinary
    # concurrency (a queue of 256 photos of 100 kB holds 25 MB).
    max_body_bytes_in_flight: int | None = None
    # A model load (file hashes, inference session, warm-up) that takes longer is reported
    # NotReady; up to model_load_concurrency loads of different models run side by side.
    model_load_timeout_s: float = 120.0
    model_load_concurrency: int = 2

    @property
    def body_bytes_in_flight(self) -> int:
        """The total bound on request bodies held at once (see max_body_bytes_in_flight)."""
        return self.max_body_bytes_in_flight or max(4 * self.max_body_bytes, 256 * 2**20)

    def batching_for(self, model: str) -> BatchingConfig:
        return self.per_model_batching.get(model, self.batching)

    def threads_for(self, model: str) -> int:
        """Intra-op threads for each of the model's instances."""
        if self.threads:
            return self.threads
        return max(1, usable_cores() // max(1, self.batching_for(model).instances))


def usable_cores() -> int:
    """Cores this process may run on (a container's cpuset, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_config(path: str | os.PathLike | None = None, **overrides: Any) -> ServingConfig:
    path = Path(path or os.environ.get("CONVZOO_CONFIG") or DEFAULT_CONFIG_PATH)
    raw: dict[str, Any] = yaml.safe_load(path.read_text()) or {} if path.exists() else {}
    raw.update(overrides)
    known = {f.name for f in fields(ServingConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{path}: unknown configuration keys {sorted(unknown)}")
    if "batching" in raw and isinstance(raw["batching"], dict):
        raw["batching"] = BatchingConfig(**raw["batching"])
    base = raw.get("batching", BatchingConfig())
    if "per_model_batching" in raw:
        raw["per_model_batching"] = {
            name: replace(base, **values) for name, values in raw["per_model_batching"].items()
        }
    for key in ("startup_models", "api_keys", "open_paths"):
        if key in raw:
            if isinstance(raw[key], str):  # tuple("key") would be its characters
                raise ValueError(f"{path}: {key} must be a list, not a string")
            raw[key] = tuple(raw[key] or ())
    return ServingConfig(**raw)
