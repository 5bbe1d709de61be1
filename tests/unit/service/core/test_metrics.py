"""The metric definitions: labelled children are remembered, and values still count."""

from __future__ import annotations

from prometheus_client import generate_latest

from service.core import metrics


def test_labels_return_the_same_child_and_it_counts():
    first = metrics.STAGE_LATENCY.labels("unit-test-model", "decode")
    assert metrics.STAGE_LATENCY.labels("unit-test-model", "decode") is first
    assert metrics.STAGE_LATENCY.labels("unit-test-model", "infer") is not first
    first.observe(0.002)
    first.observe(0.004)
    text = generate_latest(metrics.REGISTRY).decode()
    assert ('convzoo_stage_latency_seconds_count{model="unit-test-model",stage="decode"} 2.0'
            in text)


def test_named_labels_still_work():
    metrics.REQUESTS.labels(model="unit-test-model", endpoint="classify", outcome="ok").inc()
    assert metrics.REQUESTS.labels("unit-test-model", "classify", "ok")._value.get() >= 1


def test_gpu_gauges_come_from_nvml_readings(monkeypatch):
    from service.core import nvml

    reading = nvml.GpuReading(index=7, name="test GPU", memory_used_bytes=3 * 2**30,
                              memory_total_bytes=80 * 2**30, utilisation=0.42)
    monkeypatch.setattr(nvml, "read_gpus", lambda: [reading])
    metrics.refresh_gpu_gauges()
    assert metrics.GPU_MEMORY_USED.labels("7")._value.get() == 3 * 2**30
    assert metrics.GPU_UTILISATION.labels("7")._value.get() == 0.42


def test_a_broken_driver_does_not_break_the_gpu_gauges(monkeypatch):
    from service.core import nvml

    def broken():
        raise RuntimeError("NVML: GPU is lost")

    monkeypatch.setattr(nvml, "read_gpus", broken)
    metrics.refresh_gpu_gauges()  # nothing raised: /metrics still answers
