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
    # Before /readyz turns ready, load and profile every variant with real weights in the
    # families of the start-up models, so that the first /select of such a family is not the
    # one that waits for them (docs/selection.md). Off unless asked for: it loads variants
    # the start-up list does not name (a ResNet-50 brings ResNet-18 to -152); the shipped
    # service/config.yaml turns it on, its start-up models being the whole Lite family.
    profile_families_at_startup: bool = False
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
