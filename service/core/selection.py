"""Accuracy-versus-latency selection among a family's variants (MobileNet v1's alpha x rho grid,
EfficientNet-Lite0..2, ResNet's depths, any family in the registry).

This module owns the decision, not the serving. For every variant it keeps what the variant
is worth (the published ImageNet top-1 from its registry record, with that record's citation:
the project has measured no ImageNet accuracy of its own) and what it costs on this machine
now: a service time profiled (at start-up for the start-up models' families, else on demand)
and kept current from live observations (`ServiceTime`), plus the wait in the variant's
batcher under the present load (`expected_queue_wait_ms`). A decision whose figures were not
all measured before its request arrived says so (`Selection.unmeasured`) and promises no
latency. Given a `latency_budget_ms` and/or a `min_top1` floor,
`VariantSelector.choose` picks a variant on the accuracy/latency Pareto `frontier`, with
hysteresis per (family, budget bucket) so that alternating load cannot make the choice flap.
Loading, profiling and running the chosen variant are the inference core's; the policy and
its parameters are described in docs/selection.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from model_store.repository import MISSING, PRETRAINED, RANDOM_INIT
from model_store.specs import ModelSpec
from service.core import metrics
from service.core.errors import InvalidArgument, NoVariantFits

# Hysteresis: step back up the frontier only when the higher variant would leave a fifth of
# the budget spare, for three decisions in a row; step down at once when over budget.
STEP_UP_MARGIN = 0.2
STEP_UP_AFTER = 3
# Budgets within a quarter octave (about 19 %) of each other share one remembered choice.
BUCKETS_PER_OCTAVE = 4
# With no fresh observation, what was observed under load fades toward the unloaded figure
# with this half-life: a variant or family nobody is served by (stepped away from, or every
# request refused) must not be judged forever by its worst moment.
OBSERVATION_HALF_LIFE_S = 5.0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


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


@dataclass(frozen=True)
class Variant:
    """One row of a family's table: what a variant is worth and what it costs now."""

    name: str
    top1: float | None  # ImageNet top-1, percent
    top1_source: str
    weights: str  # pretrained | random-init | missing
    service_ms: float | None  # None: not measured (not loaded yet, or failed to load)
    queue_wait_ms: float = 0.0
    overhead_ms: float = 0.0  # the family's requests' time outside the batcher, see Overhead
    latency_source: str = "profiled"  # profiled | observed | unmeasured
    slowdown: float = 1.0  # observed over profiled service time (tail), see ServiceTime
    ladder: Mapping[str, float] = field(default_factory=dict)
    profiled_ms: Mapping[int, float] = field(default_factory=dict)
    observed_mean_ms: float | None = None
    observations: int = 0
    note: str = ""  # why it could not be measured
    # Not loaded and profiled when the request being decided arrived: it waited for that.
    profiled_for_request: bool = False
    overhead_observed: bool = True  # False: no request of the family seen, overhead_ms is 0

    @property
    def trained(self) -> bool:
        return self.weights == PRETRAINED

    @property
    def expected_ms(self) -> float | None:
        if self.service_ms is None:
            return None
        return self.overhead_ms + self.service_ms + self.queue_wait_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "top1": self.top1, "top1_source": self.top1_source,
            "weights": self.weights, "ladder": dict(self.ladder),
            "expected_latency_ms": _round(self.expected_ms),
            "service_ms": _round(self.service_ms), "queue_wait_ms": _round(self.queue_wait_ms),
            "overhead_ms": _round(self.overhead_ms), "latency_source": self.latency_source,
            "slowdown": _round(self.slowdown),
            "profiled_ms": {str(size): _round(ms) for size, ms in self.profiled_ms.items()},
            "observed_mean_ms": _round(self.observed_mean_ms),
            "observations": self.observations, "note": self.note,
            "profiled_for_request": self.profiled_for_request,
            "overhead_observed": self.overhead_observed,
        }

    def unmeasured(self, family: str) -> list[str]:
        """What the expected latency rests on that was not measured before this request."""
        parts = []
        if self.profiled_for_request:
            parts.append(f"{self.name} was not loaded and profiled when this request "
                         "arrived: the request waited for that (timing_ms.selection)")
        if not self.overhead_observed:
            parts.append(f"no {family} request had been served yet: decode, preprocessing "
                         "and postprocessing time is unknown and counted as 0")
        return parts


def pareto_frontier(variants: Iterable[Variant]) -> list[Variant]:
    """The variants no other beats on both accuracy and expected latency, fastest first.

    Along it accuracy rises with latency, so the most accurate variant within a budget and the
    fastest variant above a floor both lie on it.
    """
    measured = sorted((v for v in variants if v.top1 is not None and v.expected_ms is not None),
                      key=lambda v: (v.expected_ms, -v.top1))
    frontier: list[Variant] = []
    for variant in measured:
        if not frontier or variant.top1 > frontier[-1].top1:
            frontier.append(variant)
    return frontier


def _number(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidArgument(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidArgument(f"{name} must be finite, got {value!r}")
    return number


def check_flag(value: Any, name: str) -> bool:
    """A boolean option: a JSON boolean, or true/false/1/0/yes/no from a form or query."""
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise InvalidArgument(f"{name} must be true or false, got {value!r}")


def check_selection_arguments(latency_budget_ms: Any, min_top1: Any, allow_untrained: Any
                              ) -> tuple[float | None, float | None, bool]:
    budget = _number(latency_budget_ms, "latency_budget_ms")
    floor = _number(min_top1, "min_top1")
    if budget is None and floor is None:
        raise InvalidArgument("give latency_budget_ms (the most accurate variant within it), "
                              "min_top1 (the fastest variant at least this accurate), or both")
    if budget is not None and budget <= 0:
        raise InvalidArgument(f"latency_budget_ms must be positive, got {budget}")
    if floor is not None and not 0 <= floor <= 100:
        raise InvalidArgument(f"min_top1 is a top-1 accuracy in percent (0 to 100), got {floor}")
    return budget, floor, check_flag(allow_untrained, "allow_untrained")


def budget_bucket(latency_budget_ms: float) -> int:
    return math.floor(BUCKETS_PER_OCTAVE * math.log2(latency_budget_ms))


def _bucket_bounds(bucket: int) -> list[float]:
    return [round(2 ** (bucket / BUCKETS_PER_OCTAVE), 3),
            round(2 ** ((bucket + 1) / BUCKETS_PER_OCTAVE), 3)]


@dataclass(frozen=True)
class Selection:
    """One decision: the chosen variant, why, and the figures it was made on."""

    family: str
    chosen: Variant
    reason: str
    latency_budget_ms: float | None
    min_top1: float | None
    candidates: tuple[Variant, ...]
    exclusions: Mapping[str, str]  # variant -> why it could not be chosen
    frontier: tuple[str, ...]

    @property
    def unmeasured(self) -> list[str]:
        return self.chosen.unmeasured(self.family)

    def to_dict(self) -> dict[str, Any]:
        # No promise rests on a figure that was not measured before the request arrived:
        # the expected latency is then null, and `unmeasured` says what was missing.
        unmeasured = self.unmeasured
        return {
            "family": self.family, "chosen": self.chosen.name,
            "latency_measured": not unmeasured, "unmeasured": unmeasured,
            "expected_latency_ms": None if unmeasured else _round(self.chosen.expected_ms),
            "latency_budget_ms": self.latency_budget_ms, "min_top1": self.min_top1,
            "top1": self.chosen.top1, "top1_source": self.chosen.top1_source,
            "reason": self.reason,
            "candidates": [{**v.to_dict(), "on_frontier": v.name in self.frontier,
                            "excluded": self.exclusions.get(v.name)} for v in self.candidates],
        }


@dataclass
class _Choice:
    variant: str
    step_up_streak: int = 0


def _ms_text(value: float | None) -> str:
    return "unmeasured" if value is None else f"{value:.1f} ms"


class VariantSelector:
    """Per-variant latency state and per-(family, budget bucket) remembered choices.

    Not thread-safe by design: the inference core calls it from its event loop only.
    """

    def __init__(self, step_up_margin: float = STEP_UP_MARGIN,
                 step_up_after: int = STEP_UP_AFTER) -> None:
        self.step_up_margin = step_up_margin
        self.step_up_after = step_up_after
        self.service_times: dict[str, ServiceTime] = {}
        self.overheads: dict[str, Overhead] = {}  # per family
        self._choices: dict[tuple[str, int, float | None, bool], _Choice] = {}
        self.last_selection: dict[str, dict[str, Any]] = {}

    def service_time(self, name: str) -> ServiceTime:
        return self.service_times.setdefault(name, ServiceTime())

    def observe(self, family: str, variant: str, infer_ms: float, overhead_ms: float,
                batch_size: int = 1, now: float | None = None) -> None:
        """Learn from one served request: its inference time (in a batch of `batch_size`)
        and its decode/preprocess/postprocess overhead."""
        self.service_time(variant).observe(infer_ms, batch_size, now)
        self.overheads.setdefault(family, Overhead()).observe(overhead_ms, now)

    def variant(self, spec: ModelSpec, weights: str, queue_wait_ms: float = 0.0,
                note: str = "", batch_size: int = 1, now: float | None = None,
                profiled_for_request: bool = False) -> Variant:
        """The row for a registry variant, from this selector's latency state; `batch_size`
        is the batch a request sent now would run in; `profiled_for_request`: the request
        being decided waited for this variant's profile."""
        tracker = self.service_times.get(spec.name) or ServiceTime()
        overhead = self.overheads.get(spec.family, Overhead())
        published = spec.published
        return Variant(
            name=spec.name,
            top1=published.top1 if published else None,
            top1_source=f"published: {published.source}" if published else "none published",
            weights=weights, service_ms=tracker.estimate_ms(batch_size, now),
            queue_wait_ms=queue_wait_ms, slowdown=tracker.slowdown(now),
            overhead_ms=overhead.estimate_ms(now), overhead_observed=overhead.observed,
            latency_source=tracker.source,
            ladder=dict(spec.ladder), profiled_ms=dict(tracker.profiled_ms),
            observed_mean_ms=tracker.mean_ms, observations=tracker.observations, note=note,
            profiled_for_request=profiled_for_request)

    def exclusions(self, variants: Sequence[Variant], allow_untrained: bool,
                   min_top1: float | None = None) -> dict[str, str]:
        """Why each variant that cannot be chosen under these terms is out."""
        out: dict[str, str] = {}
        for v in variants:
            if v.weights == MISSING:
                out[v.name] = "not in the model store"
            elif v.weights == RANDOM_INIT and not allow_untrained:
                out[v.name] = ("random-init weights: never chosen for real traffic "
                               "(allow_untrained=true is for benchmarking)")
            elif v.weights not in (PRETRAINED, RANDOM_INIT):
                out[v.name] = f"weights {v.weights}"
            elif v.top1 is None:
                out[v.name] = "no published top-1 to rank it by"
            elif v.service_ms is None:
                out[v.name] = f"not measured: {v.note or 'not loaded'}"
            elif min_top1 is not None and v.top1 < min_top1:
                out[v.name] = f"top-1 {v.top1}% is below the {min_top1:g}% floor"
        return out

    def choose(self, family: str, variants: Sequence[Variant],
               latency_budget_ms: float | None = None, min_top1: float | None = None,
               allow_untrained: bool = False) -> Selection:
        """The variant to serve this request, counted in `metrics.SELECTIONS`."""
        if latency_budget_ms is None and min_top1 is None:
            raise InvalidArgument("give latency_budget_ms, min_top1 or both")
        excluded = self.exclusions(variants, allow_untrained, min_top1)
        self._check_any_usable(family, variants, excluded, allow_untrained, min_top1)
        frontier = pareto_frontier(v for v in variants if v.name not in excluded)
        if latency_budget_ms is None:
            chosen = frontier[0]
            reason = (f"the fastest variant meeting the {min_top1:g}% top-1 floor "
                      f"({chosen.top1}%, expected {_ms_text(chosen.expected_ms)})")
        else:
            chosen, reason = self._within_budget(family, frontier, latency_budget_ms, min_top1,
                                                 allow_untrained)
        unmeasured = chosen.unmeasured(family)
        if unmeasured:
            reason += f"; not a measured promise: {'; '.join(unmeasured)}"
        metrics.SELECTIONS.labels(family, chosen.name).inc()
        selection = Selection(family, chosen, reason, latency_budget_ms, min_top1,
                              tuple(variants), excluded, tuple(v.name for v in frontier))
        self.last_selection[family] = {
            "chosen": chosen.name, "latency_budget_ms": latency_budget_ms,
            "min_top1": min_top1, "allow_untrained": allow_untrained, "reason": reason}
        return selection

    def _check_any_usable(self, family: str, variants: Sequence[Variant],
                          excluded: Mapping[str, str], allow_untrained: bool,
                          min_top1: float | None) -> None:
        usable_weights = {PRETRAINED, RANDOM_INIT} if allow_untrained else {PRETRAINED}
        with_weights = [v for v in variants if v.weights in usable_weights]
        if not with_weights:
            counts = {s: sum(v.weights == s for v in variants) for s in (RANDOM_INIT, MISSING)}
            held = (f"{len(variants)} variants: {counts[RANDOM_INIT]} random-init, "
                    f"{counts[MISSING]} not in the store")
            if allow_untrained:
                raise NoVariantFits(f"no variant of {family} is in the model store ({held}); "
                                    "import some with `python -m model_store pull NAME`",
                                    family=family)
            raise NoVariantFits(
                f"no variant of {family} has real weights in the model store ({held}); "
                "variants without real weights are never chosen for real traffic: import real "
                "weights with `python -m model_store pull NAME`, or pass allow_untrained=true "
                "to benchmark random-init ones", family=family)
        measured = [v for v in with_weights if v.service_ms is not None and v.top1 is not None]
        if not measured:
            notes = "; ".join(f"{v.name}: {excluded.get(v.name, v.note)}" for v in with_weights)
            raise NoVariantFits(f"no variant of {family} could be measured ({notes})",
                                family=family)
        if min_top1 is not None and all(v.name in excluded for v in measured):
            best = max(measured, key=lambda v: v.top1)
            raise NoVariantFits(
                f"no variant of {family} meets the {min_top1:g}% top-1 floor: the most accurate "
                f"available, {best.name}, has {best.top1}% ({best.top1_source})",
                family=family, best_top1=best.top1, min_top1=min_top1)

    def _within_budget(self, family: str, frontier: list[Variant], budget: float,
                       min_top1: float | None, allow_untrained: bool) -> tuple[Variant, str]:
        fitting = [v for v in frontier if v.expected_ms <= budget]
        if not fitting:
            fastest = frontier[0]
            floor = f" meeting the {min_top1:g}% floor" if min_top1 is not None else ""
            raise NoVariantFits(
                f"no variant of {family} fits the {budget:g} ms latency budget: the fastest"
                f"{floor}, {fastest.name}, is expected to take {fastest.expected_ms:.1f} ms now "
                f"(service {fastest.service_ms:.1f} ms + queue wait "
                f"{fastest.queue_wait_ms:.1f} ms + decode and preprocessing "
                f"{fastest.overhead_ms:.1f} ms)", family=family, latency_budget_ms=budget,
                fastest=fastest.name, fastest_expected_ms=_round(fastest.expected_ms))
        target = fitting[-1]  # the most accurate that fits now
        fits = (f"the most accurate variant expected within the {budget:g} ms budget "
                f"({target.expected_ms:.1f} ms)")
        key = (family, budget_bucket(budget), min_top1, allow_untrained)
        by_name = {v.name: v for v in frontier}
        state = self._choices.get(key)
        if state is None or state.variant not in by_name:
            self._choices[key] = _Choice(target.name)
            return target, fits
        current = by_name[state.variant]
        if current.expected_ms > budget:
            state.variant, state.step_up_streak = target.name, 0
            return target, (f"stepped down from {current.name} (expected "
                            f"{current.expected_ms:.1f} ms, over the {budget:g} ms budget): "
                            f"{fits}")
        higher = frontier[frontier.index(current) + 1] if current is not target else None
        step_up_below = budget * (1.0 - self.step_up_margin)
        if higher is None:
            state.step_up_streak = 0
            return current, fits
        if higher.expected_ms > step_up_below:
            state.step_up_streak = 0
            return current, (f"held at {current.name} ({current.expected_ms:.1f} ms): "
                             f"{higher.name} is expected at {higher.expected_ms:.1f} ms, above "
                             f"{step_up_below:.1f} ms (the budget less the "
                             f"{self.step_up_margin:.0%} step-up margin)")
        state.step_up_streak += 1
        if state.step_up_streak >= self.step_up_after:
            state.variant, state.step_up_streak = higher.name, 0
            return higher, (f"stepped up from {current.name} to {higher.name}: expected "
                            f"{higher.expected_ms:.1f} ms, under {step_up_below:.1f} ms for "
                            f"{self.step_up_after} decisions in a row")
        return current, (f"held at {current.name} ({current.expected_ms:.1f} ms): {higher.name} "
                         f"has been under {step_up_below:.1f} ms for {state.step_up_streak} of "
                         f"the {self.step_up_after} decisions in a row a step up waits for")

    def current_choices(self, family: str) -> list[dict[str, Any]]:
        return [{"latency_budget_bucket_ms": _bucket_bounds(bucket), "min_top1": floor,
                 "allow_untrained": allow, "chosen": choice.variant,
                 "step_up_streak": choice.step_up_streak}
                for (fam, bucket, floor, allow), choice in self._choices.items() if fam == family]

    def describe(self, family: str, variants: Sequence[Variant], allow_untrained: bool = False
                 ) -> dict[str, Any]:
        """The family's table, its frontier and the choices in force, as data."""
        excluded = self.exclusions(variants, allow_untrained)
        frontier = [v.name for v in pareto_frontier(v for v in variants
                                                    if v.name not in excluded)]
        return {
            "family": family, "allow_untrained": allow_untrained,
            "variants": [{**v.to_dict(), "on_frontier": v.name in frontier,
                          "excluded": excluded.get(v.name)} for v in variants],
            "frontier": frontier,
            "current_choices": self.current_choices(family),
            "last_selection": self.last_selection.get(family),
            "policy": {"step_up_margin": self.step_up_margin,
                       "step_up_after": self.step_up_after,
                       "budget_buckets_per_octave": BUCKETS_PER_OCTAVE,
                       "service_quantile": ServiceTime.QUANTILE,
                       "observation_half_life_s": OBSERVATION_HALF_LIFE_S},
        }
