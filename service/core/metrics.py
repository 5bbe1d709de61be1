"""Every Prometheus metric the service exports, defined once.

Labels are `model`, `endpoint`, `stage` and `outcome`, never anything per request. Under
BentoML, prometheus_client runs in multiprocess mode (BentoML sets PROMETHEUS_MULTIPROC_DIR),
so these values reach BentoML's own `/metrics` collector; gauges are `livesum` so they carry
no pid label. Outside BentoML `exposition()` renders them from this module's registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from service.core import nvml

REGISTRY = CollectorRegistry(auto_describe=True)


def _remember_children(metric):
    """`metric.labels(*values)` from a dict after the first call: prometheus_client checks,
    converts and locks on every call, and a request makes about ten of them (7% of the event
    loop's time per REST request here). Label values are bounded (models, stages, codes)."""
    children: dict[tuple, object] = {}
    labels = metric.labels

    def remembered(*values, **named):
        if named:
            return labels(*values, **named)
        child = children.get(values)
        if child is None:
            child = children[values] = labels(*values)
        return child

    metric.labels = remembered
    return metric

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5,
                    0.75, 1.0, 2.5, 5.0, 10.0)

REQUESTS = _remember_children(Counter(
    "convzoo_requests_total", "Requests by model, endpoint and outcome (ok or an error code)",
    ["model", "endpoint", "outcome"], registry=REGISTRY))
REQUEST_LATENCY = _remember_children(Histogram(
    "convzoo_request_latency_seconds", "End-to-end request latency inside the service",
    ["model", "endpoint"], buckets=_LATENCY_BUCKETS, registry=REGISTRY))
STAGE_LATENCY = _remember_children(Histogram(
    "convzoo_stage_latency_seconds",
    "Latency of one stage (decode_wait, decode, preprocess, queue, infer, postprocess) per "
    "model",
    ["model", "stage"], buckets=_LATENCY_BUCKETS, registry=REGISTRY))
BATCH_SIZE = _remember_children(Histogram(
    "convzoo_batch_size", "Images per batch run by a model's dynamic batcher",
    ["model"], buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160),
    registry=REGISTRY))
IMAGES = _remember_children(Counter(
    "convzoo_images_total", "Images (or crops) run through a model", ["model"], registry=REGISTRY))
QUEUE_DEPTH = _remember_children(Gauge(
    "convzoo_queue_depth", "Images waiting in a model's batcher queue", ["model"],
    multiprocess_mode="livesum", registry=REGISTRY))
SHED = _remember_children(Counter(
    "convzoo_shed_total", "Requests refused at once because a model's queue was full",
    ["model"], registry=REGISTRY))
DECODE_BACKLOG_PIXELS = _remember_children(Gauge(
    "convzoo_decode_backlog_pixels",
    "Full-resolution pixels of the images a decode lane has admitted or keeps waiting",
    ["lane"], multiprocess_mode="livesum", registry=REGISTRY))
DECODE_BACKLOG_REQUESTS = _remember_children(Gauge(
    "convzoo_decode_backlog_images", "Images a decode lane is decoding, or keeps waiting",
    ["lane"], multiprocess_mode="livesum", registry=REGISTRY))
DECODE_REFUSED = _remember_children(Counter(
    "convzoo_decode_refused_total",
    "Images refused (503) because their decode lane's budget stayed spent", ["lane"],
    registry=REGISTRY))
BODIES_REFUSED = _remember_children(Counter(
    "convzoo_request_bodies_refused_total",
    "Request bodies refused: over max_body_bytes_in_flight (reason budget), or not received "
    "within body_timeout_s (reason timeout)", ["reason"], registry=REGISTRY))
MODELS_LOADED = Gauge(
    "convzoo_models_loaded", "Models loaded and ready to serve",
    multiprocess_mode="livesum", registry=REGISTRY)
MODEL_READY = _remember_children(Gauge(
    "convzoo_model_ready", "1 when a model is loaded and ready, 0 when it failed or is out",
    ["model"], multiprocess_mode="livesum", registry=REGISTRY))
MODEL_LOAD_SECONDS = Histogram(
    "convzoo_model_load_seconds", "Time to load and warm up a model", ["model"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=REGISTRY)
SELECTIONS = Counter(
    "convzoo_selection_choices_total", "Variants chosen by the accuracy/latency selector",
    ["family", "variant"], registry=REGISTRY)
GPU_MEMORY_USED = Gauge(
    "convzoo_gpu_memory_used_bytes", "GPU memory in use (only where a GPU exists)", ["device"],
    multiprocess_mode="livesum", registry=REGISTRY)
GPU_UTILISATION = Gauge(
    "convzoo_gpu_utilization_ratio", "GPU utilisation 0..1 (only where a GPU exists)",
    ["device"], multiprocess_mode="livesum", registry=REGISTRY)


def refresh_gpu_gauges() -> None:
    """Sample GPU memory and utilisation through NVML, where an NVIDIA driver is (no torch)."""
    try:
        readings = nvml.read_gpus()
    except Exception:  # a broken driver must not break /metrics
        return
    for reading in readings:
        GPU_MEMORY_USED.labels(str(reading.index)).set(reading.memory_used_bytes)
        GPU_UTILISATION.labels(str(reading.index)).set(reading.utilisation)


def exposition() -> bytes:
    refresh_gpu_gauges()
    return generate_latest(REGISTRY)
