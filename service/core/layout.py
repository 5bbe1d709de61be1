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

The batch size is measured the same way (`batching.preferred_batch_size: auto`). On a GPU a
larger batch is nearly free; on these CPUs EfficientNet-Lite0 ran 16-28 % slower per image
in batches of 16 than in the best small batch, its activations no longer fitting the caches
(docs/benchmarks.md). So on the chosen layout each power of two up to the largest batch runs
for a moment, and the batcher forms batches of the fastest; the largest stays unless a
smaller one beats it by `MIN_GAIN`. A model's output for an image does not depend on the
batch it ran in (checked in tests/unit/service/core/test_layout.py).
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


def candidate_batch_sizes(max_batch_size: int) -> list[int]:
    """The powers of two below the largest batch, and the largest batch itself."""
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return sizes + [max_batch_size]


def choose_batch_size(run: Callable[[np.ndarray], np.ndarray],
                      make_batch: Callable[[int], np.ndarray], instances: int,
                      max_batch_size: int, known: dict[int, float] | None = None
                      ) -> BatchSizeChoice:
    """The batch size at which `instances` runners side by side serve the most images per
    second; `known` holds sizes already timed (the layout's own measurement)."""
    speeds = dict(known or {})
    for size in candidate_batch_sizes(max_batch_size):
        if size not in speeds:
            speeds[size] = images_per_second(run, make_batch(size), instances)
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
