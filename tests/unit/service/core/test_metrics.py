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
