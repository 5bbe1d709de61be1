"""Serving configuration: which models load at start-up, backend, batching, limits, access
(API keys, gRPC TLS), ensembles, decode lanes, and the GPU path (providers, precision, I/O
binding, TensorRT cache, JPEG decoding: docs/gpu.md).

Read from a YAML file (`CONVZOO_CONFIG`, default `service/config.yaml`); every key has a
default so an empty file serves the embedded default models. The sections are pydantic
dataclasses: every value is checked for its type and range when the file is read, and a
wrong one stops the start with the file and the key named (an ensemble's members are checked
against the registry when the data plane is built: `service.core.composites`). They stay
frozen dataclasses, built positionally or by keyword, and `dataclasses.replace` checks again.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, ValidationError, field_validator, model_validator
from pydantic.dataclasses import dataclass

from service.core.admission import LaneConfig
from service.core.ensemble import DEFAULT_MAX_MEMBERS, METHODS

# Every section refuses keys it does not know (a typo is an error, not a default).
STRICT_KEYS = ConfigDict(extra="forbid")

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.yaml"


@dataclass(frozen=True, config=STRICT_KEYS)
class BatchingConfig:
    max_batch_size: int = 16
    # No added wait by default (as Triton): batches form from requests that queue while the
    # previous batch runs. A few ms more trades single-request latency for fuller batches.
    max_delay_ms: float = 0.0
    max_queue: int = 256  # images waiting per model before requests are shed
    # Batches of one model that run at the same time (Triton's instance count). The cores
    # are divided among them (see ServingConfig.threads): on CPU, more instances with fewer
    # threads each trade single-request latency for throughput under load. "auto": at
    # warm-up, time the layouts from one instance on all cores to one per core on real
    # batches of max_batch_size, and keep the fastest (Triton's Model Analyzer idea, done at
    # start-up; the choice and its figures are logged and shown in GET /models/{name}).
    instances: int | str = "auto"
    # The batches the batcher forms, up to max_batch_size. None: up to max_batch_size.
    # "auto": at warm-up, on the chosen layout, time each power of two up to max_batch_size
    # and form batches of the fastest (on these CPUs Lite0 ran 16-28 % slower per image in
    # batches of 16 than in the best small batch; on a GPU the largest batch wins). The
    # choice and its figures are logged and shown in GET /models/{name}
    # (layout.preferred_batch).
    # The shipped service/config.yaml sets auto; a configuration that leaves it out gets the
    # batches it asks for (as the tests' servers, which check batching itself).
    preferred_batch_size: int | str | None = None

    @field_validator("preferred_batch_size")
    @classmethod
    def _preferred_batch_size(cls, value: int | str | None) -> int | str | None:
        if value is None or value == "auto" or (isinstance(value, int) and value >= 1):
            return value
        raise ValueError(f"batching preferred_batch_size must be a positive integer, 'auto' "
                         f"or null, got {value!r}")

    @model_validator(mode="after")
    def _preferred_within_largest(self) -> BatchingConfig:
        size = self.preferred_batch_size
        if isinstance(size, int) and size > self.max_batch_size:
            raise ValueError(f"batching preferred_batch_size ({size}) must not exceed "
                             f"max_batch_size ({self.max_batch_size})")
        return self

    @field_validator("instances")
    @classmethod
    def _instances(cls, value: int | str) -> int | str:
        if value == "auto" or (isinstance(value, int) and value >= 1):
            return value
        raise ValueError(f"batching instances must be a positive integer or 'auto', got "
                         f"{value!r}")

    @field_validator("max_batch_size", "max_queue")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value


@dataclass(frozen=True, config=STRICT_KEYS)
class EnsembleConfig:
    """A named ensemble (`ensembles: {NAME: {models, weights, method}}`); its members are
    checked against the registry when the data plane is built (service.core.composites)."""

    models: tuple[str, ...]
    weights: tuple[float, ...] | None = None
    method: str | None = None  # None: "mean", or the request's

    @field_validator("method")
    @classmethod
    def _method(cls, value: str | None) -> str | None:
        if value is not None and value not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {value!r}")
        return value


@dataclass(frozen=True, config=STRICT_KEYS)
class TensorRTConfig:
    """ONNX Runtime's TensorRT provider (docs/gpu.md). Engines are built for a dynamic batch
    profile from 1 to the model's max batch size, and cached: a cold build takes minutes."""
    engine_cache: bool = True  # trt_engine_cache_enable
    # trt_engine_cache_path; None: `tensorrt/` in the model's own folder of the model store
    cache_dir: str | None = None
    timing_cache: bool = True  # trt_timing_cache_enable: kernel timings shared across builds


PROVIDER_KEYS = ("tensorrt", "cuda", "cpu")
PRECISIONS = ("fp32", "fp16")
DECODE_MODES = ("auto", "cpu", "gpu")


@dataclass(frozen=True, config=STRICT_KEYS)
class ServingConfig:
    default_model: str = "efficientnet_lite0"
    startup_models: tuple[str, ...] = ("efficientnet_lite0", "lenet5")
    backend: str = "onnxruntime"  # or "pytorch"
    device: str = "auto"  # auto | cpu | cuda (see `providers`)
    # --- the GPU path (docs/gpu.md) ---
    # ONNX Runtime providers to ask for, in order, among those ONNX Runtime offers; the CPU
    # provider always comes last. `device: cuda` refuses to load a model that gets no GPU
    # provider (onnxruntime-gpu lists CUDA even where no driver is: listed is not usable);
    # `device: auto` falls back to the CPU, logged. What each model got: GET /models/{name}.
    providers: tuple[str, ...] = PROVIDER_KEYS
    # fp16 runs the model's fp16 variant (inputs and outputs stay float32) on the CUDA and
    # TensorRT providers. On the CPU provider it runs fp32: refused with `device: cpu`,
    # logged with `device: auto`.
    precision: str = "fp32"
    # Bind input and output buffers per batch size: one host-to-device copy a batch, and no
    # output allocation per run. Results are identical to plain `session.run`.
    io_binding: bool = True
    tensorrt: TensorRTConfig = dataclasses.field(default_factory=TensorRTConfig)
    # JPEG decoding: `gpu` (nvJPEG through torchvision, for images of at least
    # `gpu_decode_min_pixels`), `cpu`, or `auto` (gpu when the model runs on a GPU provider
    # and torchvision sees CUDA). Header checks (pixel limit, format) always run on the CPU
    # first; other formats, and multi-crop/ensembles, always decode on the CPU.
    decode: str = "auto"
    # Below this size the CPU decodes about as fast as the round trip to the GPU: measure it
    # with `make bench-gpu` (its decode rows) and set it from there.
    gpu_decode_min_pixels: int = 1_000_000
    # Intra-op threads per model instance; None: the cores divided among the instances, so
    # that two instances on two cores do not fight over four threads.
    threads: int | None = None
    # ONNX Runtime's intra-op threads busy-wait for work (its own default): worth it only
    # on cores that do nothing but inference.
    intra_op_spinning: bool = False
    batching: BatchingConfig = dataclasses.field(default_factory=BatchingConfig)
    per_model_batching: dict[str, BatchingConfig] = dataclasses.field(default_factory=dict)
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
    # Width:height (or height:width) beyond which an image is refused before decoding: a
    # 64 x 625,000 PNG is under the pixel limit, but resized to a 256-pixel shorter side it
    # would be 640 MP.
    max_aspect_ratio: float = 20.0
    # One request's body; None: one byte per pixel of max_image_pixels (40 MB). Camera JPEGs
    # are 0.1-0.5 bytes per pixel, so the largest image we decode fits with room to spare;
    # what does not is an uncompressed format or many images, better sent as several requests.
    max_body_bytes: int | None = None
    # Decoding is admitted by cost (full-resolution pixels), in lanes with threads and budgets
    # of their own, so a thumbnail never waits behind camera photos (service/core/admission.py).
    # threads None: one per usable core. A request that does not fit its lane's budget waits
    # up to decode_wait_s (or its deadline), then gets 503 + Retry-After.
    decode_lanes: tuple[LaneConfig, ...] = ()
    decode_wait_s: float = 5.0
    # JPEGs are decoded scaled in the DCT (1/2, 1/4, 1/8) to a shorter side of at least this
    # many times what the request resizes to: 1 is fastest, 2 agrees better with full
    # decoding (service/core/decoding.py, docs/accuracy.md).
    dct_scale_margin: float = 2.0
    max_images_per_request: int = 64
    max_top_k: int = 1000
    ensembles: dict[str, EnsembleConfig] = dataclasses.field(default_factory=dict)
    # The most members one ensemble may have (configured or given in a request): each member
    # is a model run on the request's image.
    max_ensemble_members: int = DEFAULT_MAX_MEMBERS
    grpc_port: int = 3001
    # None: the REST body limit plus 1 MiB for the protobuf envelope and parameters.
    grpc_max_message_bytes: int | None = None
    # TLS for the gRPC port (PEM files); REST's TLS is `bentoml serve --ssl-certfile/-keyfile`.
    grpc_tls_cert: str | None = None
    grpc_tls_key: str | None = None
    # API keys (bearer tokens) on REST and gRPC; none configured means authentication is off.
    # A file (one key a line) keeps them out of the config, e.g. a mounted secret.
    api_keys: tuple[str, ...] = ()
    api_keys_file: str | None = None
    # REST paths answered without a key: probes and scrapes carry none, and the page at / with
    # its assets under /ui/ asks for the key itself. A trailing "*" matches a prefix. gRPC's
    # health service is always open.
    open_paths: tuple[str, ...] = ("/livez", "/readyz", "/metrics", "/", "/ui/*")
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
    # An HTTP request not answered within this is cancelled and answered 504
    # (service/time_limit.py); gRPC calls are bounded by their own deadlines.
    request_timeout_s: float = 300.0
    # A model load (file hashes, inference session, warm-up) that takes longer is reported
    # NotReady; up to model_load_concurrency loads of different models run side by side.
    model_load_timeout_s: float = 120.0
    model_load_concurrency: int = 2

    @field_validator("startup_models", "api_keys", "open_paths", "providers", "decode_lanes",
                     mode="before")
    @classmethod
    def _a_list(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str):  # tuple("key") would be its characters
            raise ValueError(f"{info.field_name} must be a list, not a string")
        return () if value is None else value

    @field_validator("max_header_bytes")
    @classmethod
    def _head_limit(cls, value: int) -> int:
        if value < 1024:
            raise ValueError(f"max_header_bytes must be at least 1024, got {value}")
        return value

    @field_validator("header_timeout_s", "body_timeout_s", "request_timeout_s",
                     "model_load_timeout_s", "decode_wait_s", "memory_budget_mb",
                     "max_aspect_ratio", "dct_scale_margin")
    @classmethod
    def _positive_number(cls, value: float, info: Any) -> float:
        if not value > 0:
            raise ValueError(f"{info.field_name} must be positive, got {value}")
        return value

    @field_validator("max_connections", "model_load_concurrency", "max_images_per_request",
                     "max_top_k", "max_image_pixels", "max_ensemble_members", "grpc_port")
    @classmethod
    def _positive_count(cls, value: int, info: Any) -> int:
        if value < 1:
            raise ValueError(f"{info.field_name} must be at least 1, got {value}")
        return value

    def __post_init__(self) -> None:
        check_gpu_settings(self)

    @property
    def body_bytes_in_flight(self) -> int:
        """The total bound on request bodies held at once (see max_body_bytes_in_flight)."""
        return self.max_body_bytes_in_flight or max(4 * self.body_limit_bytes, 256 * 2**20)

    def batching_for(self, model: str) -> BatchingConfig:
        return self.per_model_batching.get(model, self.batching)

    def threads_for(self, model: str, instances: int | None = None) -> int:
        """Intra-op threads for each of the model's instances (`instances` when the count is
        being chosen, else the configured one; "auto" counts as one until chosen)."""
        if self.threads:
            return self.threads
        if instances is None:
            configured = self.batching_for(model).instances
            instances = configured if isinstance(configured, int) else 1
        return max(1, usable_cores() // max(1, instances))

    @property
    def body_limit_bytes(self) -> int:
        return self.max_body_bytes if self.max_body_bytes is not None else self.max_image_pixels

    @property
    def grpc_message_limit_bytes(self) -> int:
        return (self.grpc_max_message_bytes if self.grpc_max_message_bytes is not None
                else self.body_limit_bytes + 2**20)

    @property
    def lanes(self) -> tuple[LaneConfig, ...]:
        """The decode lanes, with their thread counts resolved."""
        lanes = self.decode_lanes or default_lanes(self.max_image_pixels)
        return tuple(dataclasses.replace(lane, threads=lane.threads or usable_cores())
                     for lane in lanes)


def default_lanes(max_image_pixels: int) -> tuple[LaneConfig, ...]:
    """Photos up to 2 MP in a lane of their own; the large lane's budget is three of the
    largest images allowed (120 MP at the default limit: ten 12 MP photos). Threads 0: one
    per usable core."""
    return (LaneConfig("small", 2_000_000, 64_000_000, 0),
            LaneConfig("large", max_image_pixels, 3 * max_image_pixels, 0))


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cores() -> int:
    """Cores this process may run on: a container's cpuset, not the host's count, and no
    more than its CPU quota (Kubernetes' CPU limit, cgroup v2 `cpu.max`, rounded up)."""
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count() or 1)
    quota = cpu_quota_cores(CGROUP_CPU_MAX)
    return min(cores, quota) if quota else cores


def cpu_quota_cores(path: Path) -> int | None:
    """Cores a cgroup v2 `cpu.max` ("QUOTA PERIOD", or "max PERIOD") allows, rounded up."""
    try:
        quota, period = path.read_text().split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def load_config(path: str | os.PathLike | None = None, **overrides: Any) -> ServingConfig:
    """The configuration in `path` (else $CONVZOO_CONFIG, else service/config.yaml), with
    `overrides` on top; ValueError naming the file and what is wrong."""
    path = Path(path or os.environ.get("CONVZOO_CONFIG") or DEFAULT_CONFIG_PATH)
    raw: dict[str, Any] = yaml.safe_load(path.read_text()) or {} if path.exists() else {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the configuration must be a mapping of keys to values")
    raw.update(overrides)
    known = {f.name for f in dataclasses.fields(ServingConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{path}: unknown configuration keys {sorted(unknown)}")
    if isinstance(raw.get("per_model_batching"), dict):
        # A model's batching is the global batching with its own keys on top.
        base = raw.get("batching") or {}
        if isinstance(base, BatchingConfig):
            base = dataclasses.asdict(base)
        raw["per_model_batching"] = {
            name: {**base, **values} if isinstance(values, dict) else values
            for name, values in raw["per_model_batching"].items()}
    if isinstance(raw.get("decode_lanes"), list):
        raw["decode_lanes"] = [{"threads": 0, **lane} if isinstance(lane, dict) else lane
                               for lane in raw["decode_lanes"]]
    try:
        return ServingConfig(**raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: {describe(exc)}") from None


def describe(error: ValidationError) -> str:
    """pydantic's errors as one line: where each is, and what is wrong."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()))
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def check_gpu_settings(config: ServingConfig) -> None:
    """Refuse GPU-path settings that cannot mean anything, before any model loads."""
    def choice(key: str, value: object, allowed: tuple[str, ...]) -> None:
        if value not in allowed:
            raise ValueError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")

    choice("device", config.device, ("auto", "cpu", "cuda"))
    choice("precision", config.precision, PRECISIONS)
    choice("decode", config.decode, DECODE_MODES)
    for provider in config.providers:
        choice("providers[]", provider, PROVIDER_KEYS)
    if config.device == "cpu" and config.precision == "fp16":
        raise ValueError("precision fp16 runs on the CUDA and TensorRT providers only; with "
                         "device: cpu use precision: fp32 (or device: auto)")
    if config.device == "cpu" and config.decode == "gpu":
        raise ValueError("decode: gpu needs a GPU; device is cpu")
