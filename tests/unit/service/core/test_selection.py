"""The accuracy/latency selector on synthetic latency tables (no models are loaded): budget,
floor, both, nothing fitting, untrained variants, the Pareto frontier, hysteresis under
alternating load. Its latency estimators are test_latency.py's; the selection service over
live engines is exercised in test_dataplane.py."""

from __future__ import annotations

import pytest

from model_store import registry
from service.core import metrics
from service.core.arguments import flag_argument, optional_number
from service.core.errors import InvalidArgument, NoVariantFits
from service.core.selection import (
    Variant,
    VariantSelector,
    check_selection_terms,
    pareto_frontier,
)

FAMILY = "synthetic"


def row(name: str, top1: float | None, service_ms: float | None, queue_wait_ms: float = 0.0,
        weights: str = "pretrained") -> Variant:
    return Variant(name=name, top1=top1, top1_source="synthetic", weights=weights,
                   service_ms=service_ms, queue_wait_ms=queue_wait_ms)


# A ladder where accuracy rises with latency: 10/20/40/80 ms for 60/70/75/77 % top-1.
LADDER = [row("a0", 60.0, 10.0), row("a1", 70.0, 20.0), row("a2", 75.0, 40.0),
          row("a3", 77.0, 80.0)]


def choose(variants=LADDER, **terms):
    return VariantSelector().choose(FAMILY, variants, **terms)


def test_budget_chooses_the_most_accurate_variant_within_it():
    assert choose(latency_budget_ms=50).chosen.name == "a2"
    assert choose(latency_budget_ms=80).chosen.name == "a3"  # exactly on budget fits
    assert choose(latency_budget_ms=10).chosen.name == "a0"


def test_floor_alone_chooses_the_fastest_variant_meeting_it():
    assert choose(min_top1=72).chosen.name == "a2"
    assert choose(min_top1=70).chosen.name == "a1"
    assert choose(min_top1=0).chosen.name == "a0"


def test_budget_and_floor_choose_the_most_accurate_within_budget_meeting_the_floor():
    assert choose(latency_budget_ms=100, min_top1=72).chosen.name == "a3"
    assert choose(latency_budget_ms=50, min_top1=72).chosen.name == "a2"
    with pytest.raises(NoVariantFits) as info:
        choose(latency_budget_ms=30, min_top1=72)
    assert "30 ms latency budget" in info.value.message
    assert "fastest meeting the 72% floor, a2, is expected to take 40.0 ms" in info.value.message


def test_expected_latency_counts_queue_wait_and_overhead():
    loaded = [row("a0", 60.0, 10.0), row("a1", 70.0, 20.0, queue_wait_ms=50.0)]
    assert choose(loaded, latency_budget_ms=50).chosen.name == "a0"
    with_overhead = Variant("x", 70.0, "synthetic", "pretrained", 20.0, queue_wait_ms=5.0,
                            overhead_ms=3.0)
    assert with_overhead.expected_ms == 28.0


def test_nothing_within_budget_says_which_variant_is_fastest_and_by_how_much():
    with pytest.raises(NoVariantFits) as info:
        choose(latency_budget_ms=5)
    message = info.value.message
    assert "no variant of synthetic fits the 5 ms latency budget" in message
    assert "a0, is expected to take 10.0 ms" in message
    assert info.value.details["fastest"] == "a0"


def test_unreachable_floor_says_what_the_best_accuracy_is():
    with pytest.raises(NoVariantFits) as info:
        choose(min_top1=80)
    assert "80% top-1 floor" in info.value.message
    assert "a3, has 77.0%" in info.value.message


def parsed_terms(latency_budget_ms, min_top1, allow_untrained):
    """What an adapter makes of the wire values (service.core.arguments), then checks."""
    budget = optional_number(latency_budget_ms, "latency_budget_ms")
    floor = optional_number(min_top1, "min_top1")
    allow = flag_argument(allow_untrained, "allow_untrained")
    check_selection_terms(budget, floor)
    return budget, floor, allow


@pytest.mark.parametrize("budget,floor", [(None, None), ("", None), (None, "")])
def test_neither_budget_nor_floor_is_an_invalid_argument(budget, floor):
    with pytest.raises(InvalidArgument, match="latency_budget_ms"):
        parsed_terms(budget, floor, False)
    with pytest.raises(InvalidArgument):
        VariantSelector().choose(FAMILY, LADDER)


def test_arguments_from_forms_and_json_are_checked():
    assert parsed_terms("50", "70.5", "true") == (50.0, 70.5, True)
    assert parsed_terms(50, None, None) == (50.0, None, False)
    for bad in ({"latency_budget_ms": -1}, {"latency_budget_ms": "fast"},
                {"latency_budget_ms": True}, {"min_top1": 101}, {"min_top1": float("nan")},
                {"latency_budget_ms": 5, "allow_untrained": "maybe"}):
        terms = {"latency_budget_ms": None, "min_top1": None, "allow_untrained": False, **bad}
        with pytest.raises(InvalidArgument):
            parsed_terms(**terms)


def test_untrained_variants_are_never_chosen_unless_allowed():
    ladder = [*LADDER[:3], row("a3", 77.0, 80.0, weights="random-init"),
              row("a4", 79.0, 90.0, weights="missing")]
    selection = choose(ladder, latency_budget_ms=1000)
    assert selection.chosen.name == "a2"
    assert "random-init" in selection.exclusions["a3"]
    assert selection.exclusions["a4"] == "not in the model store"
    assert choose(ladder, latency_budget_ms=1000, allow_untrained=True).chosen.name == "a3"


def test_a_family_without_real_weights_refuses_real_traffic():
    untrained = [row("b0", 50.0, 5.0, weights="random-init"), row("b1", 60.0, None,
                                                                  weights="missing")]
    with pytest.raises(NoVariantFits) as info:
        choose(untrained, latency_budget_ms=1000)
    assert "no variant of synthetic has real weights" in info.value.message
    assert "never chosen for real traffic" in info.value.message
    assert choose(untrained, latency_budget_ms=1000, allow_untrained=True).chosen.name == "b0"
    nothing = [row("b0", 50.0, None, weights="missing")]
    with pytest.raises(NoVariantFits, match="is in the model store"):
        choose(nothing, latency_budget_ms=1000, allow_untrained=True)


def test_frontier_keeps_only_undominated_variants_fastest_first():
    variants = [row("slow-and-weak", 65.0, 50.0), row("tie-weaker", 69.0, 20.0),
                row("unmeasured", 99.0, None), row("no-accuracy", None, 1.0), *LADDER]
    assert [v.name for v in pareto_frontier(variants)] == ["a0", "a1", "a2", "a3"]
    # A variant that is both faster and more accurate removes the one it dominates.
    assert [v.name for v in pareto_frontier([*LADDER, row("best", 78.0, 15.0)])] == ["a0",
                                                                                     "best"]
    assert choose([*LADDER, row("best", 78.0, 15.0)], latency_budget_ms=100).chosen.name == "best"


def test_every_choice_is_counted_in_the_selections_metric():
    def count() -> float:
        return metrics.REGISTRY.get_sample_value(
            "convzoo_selection_choices_total", {"family": FAMILY, "variant": "a1"}) or 0.0

    before = count()
    choose(latency_budget_ms=25)
    choose(min_top1=70)
    assert count() == before + 2


def ladder_under_load(top_queue_wait_ms: float) -> list[Variant]:
    """a2 serves in 70 ms; its queue wait is what the load does to it."""
    return [row("a0", 60.0, 10.0), row("a1", 70.0, 30.0),
            row("a2", 75.0, 70.0, queue_wait_ms=top_queue_wait_ms)]


HIGH, LOW = 60.0, 0.0  # a2 expected at 130 ms (over a 100 ms budget) or 70 ms (under 80)


def test_load_steps_down_at_once_and_alternating_load_does_not_flap():
    selector = VariantSelector(step_up_margin=0.2, step_up_after=3)

    def decide(queue_wait_ms: float) -> str:
        return selector.choose(FAMILY, ladder_under_load(queue_wait_ms),
                               latency_budget_ms=100).chosen.name

    assert decide(LOW) == "a2"
    assert decide(HIGH) == "a1"  # stepped down on the first decision over budget
    choices = [decide(load) for load in [LOW, HIGH] * 6]
    assert choices == ["a1"] * 12, "alternating load made the choice flap"
    # Sustained low load steps back up on the K-th consecutive decision, not before.
    assert [decide(LOW) for _ in range(3)] == ["a1", "a1", "a2"]
    assert decide(LOW) == "a2"


def test_a_higher_variant_inside_the_margin_band_does_not_pull_the_choice_up():
    selector = VariantSelector(step_up_margin=0.2, step_up_after=3)
    selector.choose(FAMILY, ladder_under_load(HIGH), latency_budget_ms=100)  # starts at a1
    for _ in range(5):  # a2 at 90 ms fits the budget but leaves less than 20 % spare
        selection = selector.choose(FAMILY, ladder_under_load(20.0), latency_budget_ms=100)
        assert selection.chosen.name == "a1"
        assert "step-up margin" in selection.reason


def test_budget_buckets_remember_their_own_choice():
    selector = VariantSelector()
    selector.choose(FAMILY, ladder_under_load(HIGH), latency_budget_ms=100)  # a1 for ~100 ms
    assert selector.choose(FAMILY, ladder_under_load(LOW),
                           latency_budget_ms=1000).chosen.name == "a2"
    # 105 ms is in the 100 ms bucket (quarter octaves): it holds a1 there.
    assert selector.choose(FAMILY, ladder_under_load(LOW),
                           latency_budget_ms=105).chosen.name == "a1"
    described = selector.describe(FAMILY, ladder_under_load(LOW))
    assert described["frontier"] == ["a0", "a1", "a2"]
    assert sorted(c["chosen"] for c in described["current_choices"]) == ["a1", "a2"]


def test_the_selector_learns_the_familys_overhead_from_requests():
    selector = VariantSelector()
    selector.observe(FAMILY, "a0", infer_ms=10.0, overhead_ms=4.0, batch_size=1)
    assert selector.overheads[FAMILY].estimate_ms() == pytest.approx(4.0)
    assert selector.service_times["a0"].observations == 0  # nothing profiled to compare with


def test_rows_from_the_registry_cite_the_published_top1():
    spec = registry.get("efficientnet_lite2")
    selector = VariantSelector()
    selector.service_time(spec.name).record_profile(1, 42.0)
    variant = selector.variant(spec, "pretrained", queue_wait_ms=3.0)
    assert variant.top1 == spec.published.top1 == 77.6
    assert variant.top1_source.startswith("published: ") and "README" in variant.top1_source
    assert variant.expected_ms == 45.0 and variant.latency_source == "profiled"
    mobilenet = [s for s in registry.family("mobilenet_v1")]
    assert len(mobilenet) == 16
    rows = [selector.variant(s, "missing") for s in mobilenet]
    with pytest.raises(NoVariantFits, match="16 not in the store"):
        selector.choose("mobilenet_v1", rows, latency_budget_ms=1000)


def lite_rows(selector: VariantSelector, waited_for: frozenset[str] = frozenset()
              ) -> list[Variant]:
    """The Lite ladder profiled at 20/30/40 ms; `waited_for`: variants the request waited
    to have loaded and profiled."""
    rows = []
    for spec, ms in zip(registry.family("efficientnet_lite"), (20.0, 30.0, 40.0), strict=True):
        selector.service_time(spec.name).record_profile(1, ms)
        rows.append(selector.variant(spec, "pretrained",
                                     profiled_for_request=spec.name in waited_for))
    return rows


def test_no_latency_is_promised_before_the_familys_overhead_was_observed():
    selector = VariantSelector()
    first = selector.choose("efficientnet_lite", lite_rows(selector), latency_budget_ms=100)
    answer = first.to_dict()
    assert answer["chosen"] == "efficientnet_lite2"
    assert answer["latency_measured"] is False and answer["expected_latency_ms"] is None
    assert answer["unmeasured"] == [
        "no efficientnet_lite request had been served yet: decode, preprocessing and "
        "postprocessing time is unknown and counted as 0"]
    assert "not a measured promise" in answer["reason"]
    assert all(c["overhead_observed"] is False for c in answer["candidates"])

    # Observed through Lite0, whose figures the choice of Lite2 does not use.
    selector.observe("efficientnet_lite", "efficientnet_lite0", infer_ms=20.0, overhead_ms=8.0)
    second = selector.choose("efficientnet_lite", lite_rows(selector),
                             latency_budget_ms=100).to_dict()
    assert second["latency_measured"] is True and second["unmeasured"] == []
    assert second["expected_latency_ms"] == 48.0
    assert "not a measured promise" not in second["reason"]


def test_a_variant_the_request_waited_to_profile_is_flagged_and_promises_nothing():
    selector = VariantSelector()
    selector.observe("efficientnet_lite", "efficientnet_lite1", infer_ms=30.0, overhead_ms=5.0)
    rows = lite_rows(selector, waited_for=frozenset({"efficientnet_lite2"}))
    answer = selector.choose("efficientnet_lite", rows, latency_budget_ms=100).to_dict()
    assert answer["chosen"] == "efficientnet_lite2"
    assert answer["latency_measured"] is False and answer["expected_latency_ms"] is None
    assert answer["unmeasured"] == [
        "efficientnet_lite2 was not loaded and profiled when this request arrived: the "
        "request waited for that (timing_ms.selection)"]
    flagged = {c["name"]: c["profiled_for_request"] for c in answer["candidates"]}
    assert flagged == {"efficientnet_lite0": False, "efficientnet_lite1": False,
                       "efficientnet_lite2": True}
    # A choice of a variant that was ready keeps its promise, whatever the others were.
    floor = selector.choose("efficientnet_lite", rows, min_top1=75).to_dict()
    assert floor["chosen"] == "efficientnet_lite0" and floor["latency_measured"] is True
    assert floor["expected_latency_ms"] == 25.0
