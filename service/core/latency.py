"""What a variant costs on this machine now, in milliseconds: the latency model of selection.

For every variant a `ServiceTime`: a profile (the median of a few runs at batch size 1 and at
the max batch, taken at start-up for the start-up models' families, else on demand) kept
current from live observations; for every family an `Overhead` (decode, preprocess and
postprocess, outside the batcher); and `expected_queue_wait_ms`, the wait in a variant's
batcher under the present load. `service.core.selection` ranks variants on these figures.
"""

from __future__ import annotations

import time

# With no fresh observation, what was observed under load fades toward the unloaded figure
# with this half-life: a variant or family nobody is served by (stepped away from, or every
# request refused) must not be judged forever by its worst moment.
OBSERVATION_HALF_LIFE_S = 5.0


def _faded(unloaded: float, observed: float, observed_at: float, now: float | None) -> float:
    age = (time.monotonic() if now is None else now) - observed_at
    return unloaded + (observed - unloaded) * 0.5 ** (max(0.0, age) / OBSERVATION_HALF_LIFE_S)


class ServiceTime:
    """What a batch through one variant's backend costs on this machine, in milliseconds.

    Profiled on demand: the median of a few runs at batch size 1 and at the max batch, sizes
    in between interpolated linearly (on a CPU a batch costs about the sum of its images).
    Kept current by observation: each served request's inference time is divided by the
    profile's figure for the batch it actually ran in, and a 95th-percentile tracker follows
    that slowdown. Its stochastic-approximation update q += STEP * q * (0.95 - [x <= q])
    rises 9.5 % on an observation above the estimate and falls 0.5 % on one below, so it
    settles where one observation in twenty exceeds it (a tail figure: a latency budget is a
    promise about slow requests too). The slowdown is what the machine does to the variant
    (other work competing for the cores, a profile taken at a busy moment); the size of the
    batch a request will join is read from the batcher now, so load is not counted twice.
    With no fresh observation the slowdown fades back to 1 (OBSERVATION_HALF_LIFE_S); under
    steady traffic that fading between observations pulls a little against the 0.5 % steps,
    so the figure sits between the 90th and 95th percentiles. An EWMA of the observed times
    is kept for reports.
    """

    QUANTILE = 0.95
    STEP = 0.1
    MEAN_WEIGHT = 0.2

    def __init__(self) -> None:
        self.profiled_ms: dict[int, float] = {}
        self.mean_ms: float | None = None
        self.observations = 0
        self._tail_slowdown = 1.0
        self._observed_at = 0.0

    def record_profile(self, batch_size: int, median_ms: float) -> None:
        self.profiled_ms[batch_size] = median_ms

    @property
    def source(self) -> str:
        if self.observations:
            return "observed"
        return "profiled" if self.profiled_ms else "unmeasured"

    def profiled_at(self, batch_size: int = 1) -> float | None:
        """The profile's figure for a batch of this size (linear between the measured ones)."""
        if not self.profiled_ms:
            return None
        sizes = sorted(self.profiled_ms)
        if batch_size <= sizes[0] or len(sizes) == 1:
            return self.profiled_ms[sizes[0]]
        lower = max(s for s in sizes if s <= batch_size)
        upper = min((s for s in sizes if s >= batch_size), default=sizes[-1])
        if upper == lower:
            return self.profiled_ms[lower]
        share = (batch_size - lower) / (upper - lower)
        return self.profiled_ms[lower] + share * (self.profiled_ms[upper]
                                                   - self.profiled_ms[lower])

    def slowdown(self, now: float | None = None) -> float:
        if not self.observations:
            return 1.0
        return _faded(1.0, self._tail_slowdown, self._observed_at, now)

    def estimate_ms(self, batch_size: int = 1, now: float | None = None) -> float | None:
        """The tail time of a batch of this size now; None before the variant is profiled."""
        profiled = self.profiled_at(batch_size)
        return None if profiled is None else profiled * self.slowdown(now)

    def observe(self, infer_ms: float, batch_size: int = 1, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.mean_ms = (infer_ms if self.mean_ms is None
                        else self.mean_ms + self.MEAN_WEIGHT * (infer_ms - self.mean_ms))
        profiled = self.profiled_at(batch_size)
        if not profiled:
            return  # nothing to compare with: the core profiles before a variant can serve
        ratio, current = infer_ms / profiled, self.slowdown(now)
        below = 1.0 if ratio <= current else 0.0
        self._tail_slowdown = current + self.STEP * current * (self.QUANTILE - below)
        self._observed_at = now
        self.observations += 1


class Overhead:
    """What a family's requests spend outside the batcher, in milliseconds: decode,
    preprocess, postprocess and the waits for a worker thread between them.

    Mostly the image's and the machine's cost rather than the variant's, so one figure per
    family: an EWMA of what requests took. With no fresh observation it fades toward the
    lowest one seen (the unloaded cost), as service times fade toward their profile.
    """

    WEIGHT = 0.2

    def __init__(self) -> None:
        self.lowest_ms: float | None = None
        self._mean_ms = 0.0
        self._observed_at = 0.0

    @property
    def observed(self) -> bool:
        return self.lowest_ms is not None

    def estimate_ms(self, now: float | None = None) -> float:
        if self.lowest_ms is None:
            return 0.0  # nothing observed yet: `Variant.overhead_observed` says so
        return _faded(self.lowest_ms, self._mean_ms, self._observed_at, now)

    def observe(self, overhead_ms: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self.lowest_ms is None:
            self._mean_ms = self.lowest_ms = overhead_ms
        else:
            current = self.estimate_ms(now)
            self._mean_ms = current + self.WEIGHT * (overhead_ms - current)
            self.lowest_ms = min(self.lowest_ms, overhead_ms)
        self._observed_at = now


def expected_queue_wait_ms(images_ahead: int, in_flight: int, max_batch_size: int,
                           batch_ms: float, max_delay_ms: float = 0.0,
                           instances: int = 1) -> float:
    """How long a request arriving now should wait in a variant's batcher before it runs.

    The images ahead (queued, or on their way to the queue) run `max_batch_size` at a time
    on `instances` side by side (ahead / (max batch x instances) x the recent batch time,
    which stands for what a batch costs under this load); when every instance is busy, the
    first to finish has on average half its batch left; and a batch that will not fill
    waits up to the batcher's `max_delay_ms` for companions, which overlaps with that rest.
    """
    instances = max(1, instances)
    ahead = images_ahead / (max(1, max_batch_size) * instances) * batch_ms
    running = batch_ms / 2.0 if in_flight >= instances else 0.0
    gathering = max_delay_ms if images_ahead + 1 < max_batch_size else 0.0
    return ahead + max(running, gathering)
