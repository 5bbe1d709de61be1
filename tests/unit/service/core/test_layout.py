"""Instance layouts chosen by measurement: candidates, the measurement, and the choice.

The fake models sleep (releasing the GIL, as ONNX Runtime does while it runs), for a time
that depends on their thread count, so which layout is faster is known in advance.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from service.core.layout import (
    MEASUREMENT_ROUNDS,
    MIN_GAIN,
    BatchSizeChoice,
    LayoutChoice,
    LayoutTiming,
    candidate_batch_sizes,
    candidate_layouts,
    choose_batch_size,
    choose_layout,
    images_per_second,
    median_speeds,
)


@pytest.mark.parametrize("cores, expected", [
    (1, [(1, 1)]),
    (2, [(1, 2), (2, 1)]),
    (6, [(1, 6), (2, 3), (3, 2), (6, 1)]),
    (16, [(1, 16), (2, 8), (4, 4), (8, 2), (16, 1)]),
])
def test_candidates_run_from_one_instance_on_all_cores_to_one_per_core(cores, expected):
    assert candidate_layouts(cores) == expected


def sleeping_model(seconds_by_threads: dict[int, float]):
    built: list[int] = []

    def make(threads: int):
        built.append(threads)

        def run(batch: np.ndarray) -> np.ndarray:
            time.sleep(seconds_by_threads[threads])
            return batch
        return run

    return make, built


BATCH = np.zeros((4, 3, 8, 8), np.float32)


def test_side_by_side_instances_are_measured_side_by_side():
    make, _ = sleeping_model({1: 0.02})
    one = images_per_second(make(1), BATCH, instances=1)
    two = images_per_second(make(1), BATCH, instances=2)
    assert two > 1.4 * one  # both instances ran at once


def test_two_single_thread_instances_win_when_a_second_thread_helps_little():
    # One instance on two threads: 8 ms a batch. Two single-thread ones: 10 ms each, at once.
    make, built = sleeping_model({2: 0.008, 1: 0.010})
    choice, runner = choose_layout(make, BATCH, cores=2)
    assert (choice.instances, choice.threads) == (2, 1)
    assert [m.instances for m in choice.measured] == [1, 2]
    assert choice.measured[1].images_per_s > choice.measured[0].images_per_s
    assert "2 x 1 threads" in choice.reason and "against one instance" in choice.reason
    assert built == [2, 1] and runner(BATCH) is BATCH


def test_the_faster_single_instance_is_kept():
    make, _ = sleeping_model({2: 0.01, 1: 0.05})  # a second instance could not catch up
    choice, _ = choose_layout(make, BATCH, cores=2)
    assert (choice.instances, choice.threads) == (1, 2)
    assert choice.to_dict()["chosen_by"] == "measurement"


def test_one_instance_stays_unless_another_layout_wins_by_the_margin(monkeypatch):
    speeds = {1: 100.0, 2: 100.0 * (1 + MIN_GAIN / 2)}  # instances -> images/s
    monkeypatch.setattr("service.core.layout.images_per_second",
                        lambda run, batch, instances, warm_up=True: speeds[instances])
    make, _ = sleeping_model({2: 0.0, 1: 0.0})
    choice, _ = choose_layout(make, BATCH, cores=2)
    assert (choice.instances, choice.threads) == (1, 2)
    assert f"no layout beat one instance on 2 cores by {MIN_GAIN:.0%}" in choice.reason
    speeds[2] = 100.0 * (1 + 2 * MIN_GAIN)
    assert choose_layout(make, BATCH, cores=2)[0].instances == 2


# --- the preferred batch size ---------------------------------------------------------------

def batch_cost_model(seconds_per_image: dict[int, float]):
    """A model whose cost per image depends on the batch size (cache effects on a CPU)."""
    def run(batch: np.ndarray) -> np.ndarray:
        time.sleep(seconds_per_image[len(batch)] * len(batch))
        return batch
    return run


def make_batch(size: int) -> np.ndarray:
    return np.zeros((size, 3, 8, 8), np.float32)


@pytest.mark.parametrize("largest, expected", [
    (1, [1]), (2, [1, 2]), (16, [1, 2, 4, 8, 16]), (12, [1, 2, 4, 8, 12]),
    (64, [1, 2, 4, 8, 16, 32, 64]),
])
def test_batch_size_candidates_are_powers_of_two_and_the_largest(largest, expected):
    assert candidate_batch_sizes(largest) == expected


def test_a_smaller_batch_that_runs_faster_per_image_is_chosen():
    run = batch_cost_model({1: 0.004, 2: 0.003, 4: 0.004, 8: 0.005})
    choice = choose_batch_size(run, make_batch, instances=1, max_batch_size=8)
    assert choice.size == 2
    assert [size for size, _ in choice.measured] == [1, 2, 4, 8]
    speeds = dict(choice.measured)
    assert speeds[2] == max(speeds.values())
    assert "batches of up to 2" in choice.reason and "against batches of 8" in choice.reason
    assert choice.to_dict()["chosen_by"] == "measurement"


def test_the_largest_batch_stays_unless_beaten_clearly(monkeypatch):
    # A GPU's shape: larger batches cost less per image.
    run = batch_cost_model({1: 0.008, 2: 0.006, 4: 0.004})
    choice = choose_batch_size(run, make_batch, instances=2, max_batch_size=4)
    assert choice.size == 4 and "no smaller batch beat it" in choice.reason
    # A smaller batch within MIN_GAIN of the largest does not displace it.
    almost = {4: 100.0, 1: 100.0 * (1 + MIN_GAIN / 2), 2: 90.0}
    monkeypatch.setattr("service.core.layout.images_per_second",
                        lambda run, batch, instances, warm_up=True: almost[len(batch)])
    assert choose_batch_size(batch_cost_model({}), make_batch, 1, 4).size == 4


def test_candidates_are_timed_in_turns_and_keep_their_median(monkeypatch):
    # The machine slows down for one timing of each candidate, at a different moment for
    # each: in turns, with medians, the faster candidate still wins.
    calls: list[tuple[str, bool]] = []
    timings = iter([100.0, 60.0,    # round 1: b in a slow moment
                    40.0, 90.0,     # round 2: a in a slow moment
                    100.0, 90.0])   # round 3

    def timed(run, batch, instances, warm_up=True):
        calls.append((run, warm_up))
        return next(timings)
    monkeypatch.setattr("service.core.layout.images_per_second", timed)
    speeds = median_speeds({"a": ("a", BATCH, 1), "b": ("b", BATCH, 1)})
    assert speeds == {"a": 100.0, "b": 90.0}
    assert [run for run, _ in calls] == ["a", "b"] * MEASUREMENT_ROUNDS
    # warmed up once, before its first timing
    assert [warm for _, warm in calls] == [True, True] + [False, False] * 2
    # ... unless it already ran (the largest batch, after the layouts' measurement)
    calls.clear()
    timings = iter([100.0] * 2 * MEASUREMENT_ROUNDS)
    median_speeds({"a": ("a", BATCH, 1), "b": ("b", BATCH, 1)}, warmed={"b"})
    assert [warm for _, warm in calls] == [True, False] + [False, False] * 2


def test_every_batch_size_is_timed_in_the_same_turns_as_the_largest():
    ran: list[int] = []

    def run(batch):
        ran.append(len(batch))
        return batch
    choice = choose_batch_size(run, make_batch, 1, 4)
    assert [size for size, _ in choice.measured] == [1, 2, 4]
    # the sizes in the order they ran, each stretch of one size counted once: in turns
    turns = [size for i, size in enumerate(ran) if i == 0 or ran[i - 1] != size]
    assert turns == [1, 2, 4] * MEASUREMENT_ROUNDS


def test_the_batch_sizes_run_are_those_the_measurements_timed():
    timings = (LayoutTiming(1, 2, 50.0), LayoutTiming(2, 1, 60.0))
    searched = BatchSizeChoice(2, ((1, 90.0), (2, 95.0), (16, 70.0)), "measured")
    assert LayoutChoice(2, 1, 16, reason="configured").batch_sizes_run == frozenset()
    assert LayoutChoice(2, 1, 16, reason="configured",
                        preferred_batch=BatchSizeChoice(8)).batch_sizes_run == frozenset()
    assert LayoutChoice(2, 1, 16, timings, "measured").batch_sizes_run == {16}
    assert LayoutChoice(2, 1, 16, reason="configured",
                        preferred_batch=searched).batch_sizes_run == {1, 2, 16}


def test_the_layout_reports_the_batches_it_forms():
    layout = LayoutChoice(2, 1, 16, reason="configured")
    assert layout.preferred_batch_size == 16
    assert layout.to_dict()["preferred_batch"] == {
        "size": 16, "chosen_by": "configuration", "reason": "configured", "measured": []}
    chosen = BatchSizeChoice(2, ((1, 90.0), (2, 95.0), (16, 70.0)), "measured")
    layout = LayoutChoice(2, 1, 16, reason="configured", preferred_batch=chosen)
    assert layout.preferred_batch_size == 2
    assert layout.to_dict()["preferred_batch"]["measured"][1] == {"batch_size": 2,
                                                                  "images_per_s": 95.0}
