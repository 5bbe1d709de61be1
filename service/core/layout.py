"""A model's instance layout, chosen by measurement at warm-up (`batching.instances: auto`).

On CPU the cores can run one instance of a model with all of them as intra-op threads, one
single-thread instance per core side by side, or anything between. Which is faster depends
on the model and the machine: EfficientNet-Lite0's small convolutions gain little from a
second thread, which waits at every parallel section, so two single-thread instances run it
about a fifth faster on two cores, while ResNet-50's large convolutions split well and run as
fast either way (docs/benchmarks.md). So instead of guessing, each candidate layout runs real
batches of the configured size for a moment, every instance at once, and the fastest is kept:
Triton's Model Analyzer idea, done at start-up. A layout must beat one instance on all cores
by `MIN_GAIN` to be chosen, since one instance gives the lowest single-request latency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# Each instance runs at least this many batches, and the whole measurement at least this long.
MIN_RUNS_PER_INSTANCE = 3
MIN_SECONDS = 0.3
# Gains below this are within this kind of machine's minute-to-minute drift.
MIN_GAIN = 0.05


@dataclass(frozen=True)
class LayoutTiming:
    instances: int
    threads: int
    images_per_s: float


@dataclass(frozen=True)
class LayoutChoice:
    instances: int
    threads: int
    batch_size: int
    measured: tuple[LayoutTiming, ...] = field(default=())
    reason: str = ""

    def to_dict(self) -> dict:
        return {"instances": self.instances, "threads_per_instance": self.threads,
                "chosen_by": "measurement" if self.measured else "configuration",
                "batch_size": self.batch_size, "reason": self.reason,
                "measured": [{"instances": m.instances, "threads": m.threads,
                              "images_per_s": round(m.images_per_s, 1)}
                             for m in self.measured]}


def candidate_layouts(cores: int) -> list[tuple[int, int]]:
    """(instances, threads each) from one instance on all cores to one per core, using
    every core in each."""
    return [(instances, cores // instances) for instances in range(1, cores + 1)
            if cores % instances == 0]


def images_per_second(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray,
                      instances: int) -> float:
    """Throughput of `instances` threads each running `batch` through `run` at once."""
    run(batch)  # allocations and kernel choice, off the clock
    counts = [0] * instances
    stop = threading.Event()

    def worker(index: int) -> None:
        while not stop.is_set() or counts[index] < MIN_RUNS_PER_INSTANCE:
            run(batch)
            counts[index] += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True)
               for i in range(instances)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(MIN_SECONDS)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(counts) * len(batch) / (time.perf_counter() - started)


def choose_layout(make_runner: Callable[[int], Callable[[np.ndarray], np.ndarray]],
                  batch: np.ndarray, cores: int) -> tuple[LayoutChoice, Callable]:
    """The fastest layout for `batch` and the runner built for it (the others are dropped).

    `make_runner(threads)` builds the model with that many intra-op threads and returns its
    batch function."""
    measured, runners = [], {}
    for instances, threads in candidate_layouts(cores):
        runner = make_runner(threads)
        speed = images_per_second(runner, batch, instances)
        measured.append(LayoutTiming(instances, threads, speed))
        runners[instances] = runner
    single = measured[0]
    best = max(measured, key=lambda m: m.images_per_s)
    if best is not single and best.images_per_s < single.images_per_s * (1 + MIN_GAIN):
        best = single
    gain = best.images_per_s / single.images_per_s - 1
    reason = (f"{best.instances} x {best.threads} threads ran batches of {len(batch)} at "
              f"{best.images_per_s:.1f} img/s" + (
                  f", {gain:+.0%} against one instance on {cores} cores" if best is not single
                  else f"; no layout beat one instance on {cores} cores by "
                       f"{MIN_GAIN:.0%}"))
    choice = LayoutChoice(best.instances, best.threads, len(batch), tuple(measured), reason)
    return choice, runners[best.instances]
