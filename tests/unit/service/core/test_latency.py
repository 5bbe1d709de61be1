"""The latency model selection ranks variants on (service.core.latency): service times from
profiles and observations, the family's overhead, the expected wait in a batcher."""

from __future__ import annotations

import random

import pytest

from service.core.latency import (
    OBSERVATION_HALF_LIFE_S,
    Overhead,
    ServiceTime,
    expected_queue_wait_ms,
)


def test_service_time_starts_from_the_profile_and_tracks_a_high_quantile():
    tracker = ServiceTime()
    assert tracker.estimate_ms() is None and tracker.source == "unmeasured"
    tracker.record_profile(1, 20.0)
    tracker.record_profile(16, 200.0)
    assert tracker.estimate_ms(now=0.0) == 20.0 and tracker.source == "profiled"
    # Observations uniform on 1..100 ms: the tracker settles near their 95th percentile.
    draws = random.Random(6)
    for _ in range(3000):
        tracker.observe(draws.uniform(1.0, 100.0), now=0.0)
    assert 85.0 <= tracker.estimate_ms(now=0.0) <= 105.0
    assert 25.0 <= tracker.mean_ms <= 75.0 and tracker.source == "observed"


def test_service_time_scales_with_the_batch_a_request_will_join():
    tracker = ServiceTime()
    tracker.record_profile(1, 10.0)
    tracker.record_profile(16, 160.0)
    assert tracker.estimate_ms(8, now=0.0) == pytest.approx(10.0 + 150.0 * 7 / 15)
    assert tracker.estimate_ms(16, now=0.0) == 160.0
    # A batch of 8 that ran as the profile says is no slowdown: the batch-1 figure stands.
    for _ in range(40):
        tracker.observe(80.0, batch_size=8, now=0.0)
    assert tracker.slowdown(now=0.0) == pytest.approx(1.0, abs=0.1)
    assert tracker.estimate_ms(1, now=0.0) == pytest.approx(10.0, abs=1.0)
    # Batches twice as slow as profiled (a busy machine) double every estimate.
    for _ in range(60):
        tracker.observe(160.0, batch_size=8, now=0.0)
    assert tracker.estimate_ms(1, now=0.0) == pytest.approx(20.0, rel=0.15)


def test_service_time_relaxes_toward_the_profile_without_fresh_observations():
    tracker = ServiceTime()
    tracker.record_profile(1, 20.0)
    for _ in range(50):
        tracker.observe(200.0, now=100.0)
    burst = tracker.estimate_ms(now=100.0)
    assert burst > 150.0
    half_life = OBSERVATION_HALF_LIFE_S
    assert tracker.estimate_ms(now=100.0 + half_life) == pytest.approx(20 + (burst - 20) / 2)
    assert tracker.estimate_ms(now=100.0 + 20 * half_life) == pytest.approx(20.0, abs=0.01)


def test_overhead_follows_requests_and_fades_to_the_unloaded_cost():
    overhead = Overhead()
    assert overhead.estimate_ms(now=0.0) == 0.0
    overhead.observe(5.0, now=0.0)
    for _ in range(30):  # a contended spell: decoding and resizing take longer
        overhead.observe(45.0, now=1.0)
    assert overhead.estimate_ms(now=1.0) > 40.0
    assert overhead.estimate_ms(now=1.0 + 20 * OBSERVATION_HALF_LIFE_S) == pytest.approx(
        5.0, abs=0.01)


def test_expected_queue_wait_from_the_batcher_state():
    # Idle batcher with no added delay: no wait.
    assert expected_queue_wait_ms(0, 0, 16, 100.0) == 0.0
    # 32 images ahead at 16 a batch of 100 ms, plus half the running batch.
    assert expected_queue_wait_ms(32, 1, 16, 100.0) == 200.0 + 50.0
    # A lone request waits the batcher's max delay for companions.
    assert expected_queue_wait_ms(0, 0, 16, 100.0, max_delay_ms=25.0) == 25.0


def test_expected_queue_wait_with_instances_side_by_side():
    # Two instances drain 32 images twice as fast; one busy leaves the other free.
    assert expected_queue_wait_ms(32, 1, 16, 100.0, instances=2) == 100.0
    # Both busy: the first to finish has half its batch left.
    assert expected_queue_wait_ms(32, 2, 16, 100.0, instances=2) == 100.0 + 50.0
    assert expected_queue_wait_ms(0, 1, 16, 100.0, instances=2) == 0.0
