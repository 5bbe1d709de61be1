"""Instance layouts chosen by measurement: candidates, the measurement, and the choice.

The fake models sleep (releasing the GIL, as ONNX Runtime does while it runs), for a time
that depends on their thread count, so which layout is faster is known in advance.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from service.core.layout import MIN_GAIN, candidate_layouts, choose_layout, images_per_second


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
                        lambda run, batch, instances: speeds[instances])
    make, _ = sleeping_model({2: 0.0, 1: 0.0})
    choice, _ = choose_layout(make, BATCH, cores=2)
    assert (choice.instances, choice.threads) == (1, 2)
    assert f"no layout beat one instance on 2 cores by {MIN_GAIN:.0%}" in choice.reason
    speeds[2] = 100.0 * (1 + 2 * MIN_GAIN)
    assert choose_layout(make, BATCH, cores=2)[0].instances == 2
