"""A model's instance layout, chosen by measurement at warm-up (`batching.instances: auto`).

On CPU the cores can run one instance of a model with all of them as intra-op threads, one
single-thread instance per core side by side, or anything between. Which is faster depends
on the model and the machine: EfficientNet-Lite0's small convolutions gain little from a
second thread, which waits at every parallel section, so two single-thread instances run it
about a fifth faster on two cores, while ResNet-50's large convolutions split well and run as
fast either way (docs/benchmarks.md). So instead of guessing, each candidate layout runs real
batches of the configured size for a moment, every instance at once, and the fastest is kept:
Triton's Model Analyzer idea, done at start-up. The candidates are timed in turns, over
`MEASUREMENT_ROUNDS` rounds, and each keeps its median: timed once each, one after another,
this VM's drift decided the choice (six starts of the same server chose either layout, and
batches of 1 or 16, whose served speeds differ by a fifth and more: docs/benchmarks.md).
A layout must beat one instance on all cores by `MIN_GAIN` to be chosen, since one instance
gives the lowest single-request latency.

The batch size is measured the same way (`batching.preferred_batch_size: auto`). On a GPU a
larger batch is nearly free; on these CPUs EfficientNet-Lite0 ran 16-28 % slower per image
in batches of 16 than in the best small batch, its activations no longer fitting the caches
(docs/benchmarks.md). So on the chosen layout each power of two up to the largest batch runs
in the same turns, and the batcher forms batches of the fastest; the largest stays unless a
smaller one beats it by `MIN_GAIN`. A model's output for an image does not depend on the
batch it ran in (checked in tests/unit/service/core/test_layout.py).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

# Each candidate is timed this many times, in turns with the others; its median counts.
MEASUREMENT_ROUNDS = 3
# In each timing every instance runs at least this many batches, and the timing lasts at least
# this long: three rounds of one batch take what one timing of three batches used to.
MIN_RUNS_PER_INSTANCE = 1
MIN_SECONDS = 0.15
# Gains below this are within this kind of machine's minute-to-minute drift.
MIN_GAIN = 0.05

K = TypeVar("K")


@dataclass(frozen=True)
class LayoutTiming:
    instances: int
    threads: int
    images_per_s: float


@dataclass(frozen=True)
class BatchSizeChoice:
    """The batches the batcher forms: at most `size` images (the configured largest batch
    unless measured otherwise)."""

    size: int
    measured: tuple[tuple[int, float], ...] = ()  # (batch size, images per second)
    reason: str = "configured"

    def to_dict(self) -> dict:
        return {"size": self.size,
                "chosen_by": "measurement" if self.measured else "configuration",
                "reason": self.reason,
                "measured": [{"batch_size": size, "images_per_s": round(speed, 1)}
                             for size, speed in self.measured]}


@dataclass(frozen=True)
class LayoutChoice:
    instances: int
    threads: int
    batch_size: int  # the largest batch, which the layouts were timed on
    measured: tuple[LayoutTiming, ...] = field(default=())
    reason: str = ""
    preferred_batch: BatchSizeChoice | None = None  # None: batches of up to batch_size

    @property
    def preferred_batch_size(self) -> int:
        return self.preferred_batch.size if self.preferred_batch else self.batch_size

    @property
    def batch_sizes_run(self) -> frozenset[int]:
        """The batch sizes the measurements already ran through the chosen layout's model:
        the layouts' batch, and each size the batch-size search timed (none when configured)."""
        sizes = {self.batch_size} if self.measured else set()
        if self.preferred_batch:
            sizes.update(size for size, _ in self.preferred_batch.measured)
        return frozenset(sizes)

    def to_dict(self) -> dict:
        return {"instances": self.instances, "threads_per_instance": self.threads,
                "chosen_by": "measurement" if self.measured else "configuration",
                "batch_size": self.batch_size, "reason": self.reason,
                "measured": [{"instances": m.instances, "threads": m.threads,
                              "images_per_s": round(m.images_per_s, 1)}
                             for m in self.measured],
                "preferred_batch": (self.preferred_batch or BatchSizeChoice(
                    self.batch_size)).to_dict()}


def candidate_layouts(cores: int) -> list[tuple[int, int]]:
    """(instances, threads each) from one instance on all cores to one per core, using
    every core in each."""
    return [(instances, cores // instances) for instances in range(1, cores + 1)
            if cores % instances == 0]


def images_per_second(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray,
                      instances: int, warm_up: bool = True) -> float:
    """Throughput of `instances` threads each running `batch` through `run` at once."""
    if warm_up:
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


def median_speeds(candidates: dict[K, tuple[Callable[[np.ndarray], np.ndarray], np.ndarray,
                                             int]],
                  rounds: int = MEASUREMENT_ROUNDS,
                  warmed: Collection[K] = ()) -> dict[K, float]:
    """Images per second of each candidate (run, batch, instances side by side): timed in
    turns, `rounds` times, the median kept, so that a slow moment of the machine costs every
    candidate alike instead of deciding between them. Each is warmed up before its first
    timing unless it is among `warmed` (already run, batch and all)."""
    speeds: dict[K, list[float]] = {key: [] for key in candidates}
    for round_ in range(rounds):
        for key, (run, batch, instances) in candidates.items():
            speeds[key].append(images_per_second(run, batch, instances,
                                                 warm_up=round_ == 0 and key not in warmed))
    return {key: statistics.median(timed) for key, timed in speeds.items()}


def choose_layout(make_runner: Callable[[int], Callable[[np.ndarray], np.ndarray]],
                  batch: np.ndarray, cores: int) -> tuple[LayoutChoice, Callable]:
    """The fastest layout for `batch` and the runner built for it (the others are dropped).

    `make_runner(threads)` builds the model with that many intra-op threads and returns its
    batch function."""
    layouts = candidate_layouts(cores)
    runners = {instances: make_runner(threads) for instances, threads in layouts}
    speeds = median_speeds({instances: (runners[instances], batch, instances)
                            for instances, _ in layouts})
    measured = [LayoutTiming(instances, threads, speeds[instances])
                for instances, threads in layouts]
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


def candidate_batch_sizes(max_batch_size: int) -> list[int]:
    """The powers of two below the largest batch, and the largest batch itself."""
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return sizes + [max_batch_size]


def choose_batch_size(run: Callable[[np.ndarray], np.ndarray],
                      make_batch: Callable[[int], np.ndarray], instances: int,
                      max_batch_size: int, warmed: Collection[int] = ()) -> BatchSizeChoice:
    """The batch size at which `instances` runners side by side serve the most images per
    second. The largest is timed again, in turns with the others, though the layout's
    measurement ran it: a speed timed at another moment is not comparable on this VM. The
    sizes `run` already ran (`warmed`: the layout's measurement) are not warmed up again."""
    speeds = median_speeds({size: (run, make_batch(size), instances)
                            for size in candidate_batch_sizes(max_batch_size)},
                           warmed=warmed)
    largest = speeds[max_batch_size]
    fastest = max(speeds, key=lambda size: speeds[size])
    chosen = (fastest if speeds[fastest] >= largest * (1 + MIN_GAIN) else max_batch_size)
    measured = tuple(sorted(speeds.items()))
    if chosen == max_batch_size:
        reason = (f"batches of up to {max_batch_size} ({largest:.1f} img/s); no smaller batch "
                  f"beat it by {MIN_GAIN:.0%}")
    else:
        reason = (f"batches of up to {chosen} ran at {speeds[chosen]:.1f} img/s, "
                  f"{speeds[chosen] / largest - 1:+.0%} against batches of {max_batch_size}")
    return BatchSizeChoice(chosen, measured, reason)
