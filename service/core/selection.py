"""Accuracy-versus-latency selection among a family's variants (MobileNet v1's alpha x rho grid,
EfficientNet-Lite0..2, ResNet's depths, any family in the registry).

The whole selection. The policy (`VariantSelector`): for every variant it keeps what the
variant is worth (the published ImageNet top-1 from its registry record, with that record's
citation: the project has measured no ImageNet accuracy of its own) and what it costs on this
machine now (`service.core.latency`: a service time profiled, at start-up for the start-up
models' families, else on demand, and kept current from live observations, plus the wait in
the variant's batcher under the present load). A decision whose figures were not all
measured before its request arrived says so (`Selection.unmeasured`) and promises no
latency. Given a `latency_budget_ms` and/or a `min_top1` floor, `VariantSelector.choose` picks
a variant on the accuracy/latency Pareto `frontier`, with hysteresis per (family, budget
bucket) so that alternating load cannot make the choice flap. The service
(`FamilySelection`): the family's table from the data plane's engines, loading and profiling
variants on demand, and the run of the chosen variant. The policy and its parameters are
described in docs/selection.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from model_store import registry
from model_store.repository import MISSING, PRETRAINED, RANDOM_INIT
from model_store.specs import ModelSpec
from service.core import metrics
from service.core.composites import each_image
from service.core.engines import Engine, Engines
from service.core.errors import InvalidArgument, NoVariantFits, ServiceError
from service.core.latency import (
    OBSERVATION_HALF_LIFE_S,
    Overhead,
    ServiceTime,
    expected_queue_wait_ms,
)
from service.core.requests import FrontierRequest, SelectRequest
from service.core.results import SelectResult
from service.core.runner import ModelRunner, ms
from service.core.stored import StoreIndex

log = logging.getLogger("convzoo.core")

# Hysteresis: step back up the frontier only when the higher variant would leave a fifth of
# the budget spare, for three decisions in a row; step down at once when over budget.
STEP_UP_MARGIN = 0.2
STEP_UP_AFTER = 3
# Budgets within a quarter octave (about 19 %) of each other share one remembered choice.
BUCKETS_PER_OCTAVE = 4


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


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


def check_selection_terms(latency_budget_ms: float | None, min_top1: float | None) -> None:
    """What a selection request must give: a positive budget, a floor in percent, or both."""
    if latency_budget_ms is None and min_top1 is None:
        raise InvalidArgument("give latency_budget_ms (the most accurate variant within it), "
                              "min_top1 (the fastest variant at least this accurate), or both")
    if latency_budget_ms is not None and latency_budget_ms <= 0:
        raise InvalidArgument(f"latency_budget_ms must be positive, got {latency_budget_ms}")
    if min_top1 is not None and not 0 <= min_top1 <= 100:
        raise InvalidArgument(f"min_top1 is a top-1 accuracy in percent (0 to 100), got "
                              f"{min_top1}")


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

    Not thread-safe by design: the data plane calls it from its event loop only.
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


# --- the selection service: the table from live engines, profiling, the choice, the run --

# Profile repetitions (the median is kept) at batch 1, which decides the ranking and is
# cheap, and at the max batch, which is slow.
PROFILE_REPEATS_SINGLE = 5
PROFILE_REPEATS_MAX_BATCH = 3


class FamilySelection:
    """Selection over the data plane's engines: a family's table (loading and profiling on
    demand the variants that may serve), the choice, the chosen variant's run, and what that
    run teaches the selector. The selector and its state are made here, with the service;
    nothing has to run first. Not thread-safe by design: the event loop's only."""

    def __init__(self, engines: Engines, runner: ModelRunner, store_index: StoreIndex,
                 selector: VariantSelector | None = None) -> None:
        self.engines = engines
        self.runner = runner
        self.store_index = store_index
        self.selector = selector or VariantSelector()
        self._profiling: dict[str, asyncio.Task] = {}
        # Requests sent to a variant that are still decoding: not yet in its batcher's
        # queue, but ahead of anyone choosing now (without them, concurrent choosers would
        # all see an empty queue and pile onto the same variant).
        self._preparing: Counter[str] = Counter()
        # Profiling runs one at a time, so that their timings do not compete.
        self._profile_executor = ThreadPoolExecutor(1, thread_name_prefix="model-profile")

    def close(self) -> None:
        self._profile_executor.shutdown(wait=False)

    async def profile_startup_families(self, startup_models: Sequence[str]) -> None:
        """Load and profile, before /readyz turns ready, every variant with real weights in
        the families of the start-up models that /select can rank (a published top-1), so
        that no request waits for a profile there (issue 18: the first /select took 4.7 s)."""
        families = dict.fromkeys(registry.get(name).family for name in startup_models
                                 if name in registry.all_specs())
        for family in families:
            if not any(spec.published for spec in registry.family(family)):
                continue
            started = time.perf_counter()
            rows = await self.table(family)
            profiled = ", ".join(f"{v.name} {v.service_ms:.1f} ms" for v in rows
                                 if v.service_ms is not None)
            log.info("profiled %s for /select in %.1fs (batch 1: %s)", family,
                     time.perf_counter() - started, profiled or "no variant with real weights")

    @staticmethod
    def family_specs(family: str | None) -> list[ModelSpec]:
        specs = registry.family(family) if family else []
        if not specs:
            families = sorted({s.family for s in registry.all_specs().values()})
            what = f"unknown family {family!r}" if family else "no family given"
            raise InvalidArgument(f"{what}; families: {', '.join(families)}",
                                  valid_families=families)
        return specs

    async def table(self, family: str | None, allow_untrained: bool = False,
                    measure_untrained: bool = False) -> list[Variant]:
        """The family's rows now, loading and profiling on demand the variants that may serve
        (those this call waited for are marked `profiled_for_request`)."""
        specs = self.family_specs(family)
        stored = self.store_index.statuses()
        rows = []
        for spec in specs:
            engine = self.engines.get(spec.name)
            weights = engine.weights_status if engine else stored.get(spec.name, MISSING)
            wanted = weights == PRETRAINED or (
                weights == RANDOM_INIT and (allow_untrained or measure_untrained))
            note = ""
            waited = False  # for loading or profiling, on behalf of the request deciding
            try:
                if engine is None and wanted:
                    waited = True
                    engine = await self.engines.engine(spec.name)
                if engine is not None and not self.selector.service_time(spec.name).profiled_ms:
                    waited = True
                    await self._profile(engine)
            except ServiceError as exc:  # one broken variant must not stop the others
                note = exc.message
            if engine is None:
                rows.append(self.selector.variant(spec, weights, note=note))
                continue
            # A request sent now runs with (or after) those queued or decoding ahead of it.
            ahead = engine.batcher.queued_images + self._preparing[spec.name]
            rows.append(self.selector.variant(
                spec, weights, self._queue_wait_ms(engine, ahead), note,
                batch_size=min(ahead + 1, engine.batcher.max_batch_size),
                profiled_for_request=waited))
        return rows

    async def select(self, request: SelectRequest) -> list[SelectResult]:
        check_selection_terms(request.latency_budget_ms, request.min_top1)
        self.family_specs(request.family)
        return await each_image(request.images, partial(self._select, request))

    async def _select(self, request: SelectRequest, image: bytes) -> SelectResult:
        """Classify with the family's variant that best fits the budget and/or top-1 floor."""
        family = request.family
        started = time.perf_counter()
        rows = await self.table(family, request.allow_untrained)
        selection = self.selector.choose(family, rows, request.latency_budget_ms,
                                         request.min_top1, request.allow_untrained)
        name = selection.chosen.name
        self._preparing[name] += 1
        try:
            engine = await self.engines.engine(name)
            timing: dict[str, float] = {"selection": ms(time.perf_counter() - started)}
            # Decoded for the chosen variant alone: the smallest scale that covers its resize.
            batch = await self.runner.preprocess_images((image,), engine.spec, timing,
                                                        request.deadline)
        finally:
            self._preparing[name] -= 1
        probabilities = await self.runner.infer(engine, batch, timing, request.deadline)
        result = self.runner.results(engine, probabilities, request.top_k, timing, started)[0]
        actual_ms = round(result.timing_ms["total"] - timing["selection"], 3)
        # Overhead: all but the batcher's part, waits for a preprocessing thread included.
        self.selector.observe(family, name, timing["infer"],
                              actual_ms - timing["queue"] - timing["infer"],
                              batch_size=int(timing["batch_size"]))
        return result.extended(SelectResult, selection=selection, actual_latency_ms=actual_ms)

    async def frontier(self, request: FrontierRequest) -> dict[str, Any]:
        """The family's table, accuracy/latency frontier and choices in force, measured now.

        Random-init variants in the store are measured too (greyed in plots), never chosen.
        """
        rows = await self.table(request.family, request.allow_untrained,
                                measure_untrained=True)
        return self.selector.describe(request.family, rows, request.allow_untrained)

    async def _profile(self, engine: Engine) -> None:
        """Median backend time on zero batches of size 1 and the max batch, once per variant."""
        name = engine.spec.name
        if name not in self._profiling:
            self._profiling[name] = asyncio.ensure_future(self._run_profile(engine))
        try:
            await asyncio.shield(self._profiling[name])
        except Exception:
            self._profiling.pop(name, None)  # let a later request try again
            raise

    async def _run_profile(self, engine: Engine) -> None:
        def run() -> dict[int, float]:
            spec, medians = engine.spec, {}
            for size, repeats in ((1, PROFILE_REPEATS_SINGLE),
                                  (engine.batcher.max_batch_size, PROFILE_REPEATS_MAX_BATCH)):
                zeros = np.zeros((size, spec.input.channels, spec.input.size, spec.input.size),
                                 np.float32)
                runs = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    engine.backend.run(zeros)
                    runs.append((time.perf_counter() - t0) * 1000.0)
                medians[size] = statistics.median(runs)
            return medians

        medians = await asyncio.get_running_loop().run_in_executor(self._profile_executor, run)
        for size, median_ms in medians.items():
            self.selector.service_time(engine.spec.name).record_profile(size, median_ms)

    def _queue_wait_ms(self, engine: Engine, ahead: int) -> float:
        batcher = engine.batcher
        recent = list(batcher.recent_batch_ms)[-8:]
        batch_ms = (statistics.fmean(recent) if recent else
                    self.selector.service_time(engine.spec.name).estimate_ms() or 0.0)
        return expected_queue_wait_ms(ahead, batcher.in_flight, batcher.max_batch_size,
                                      batch_ms, batcher.max_delay * 1e3, batcher.instances)
