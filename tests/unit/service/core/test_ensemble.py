"""Ensemble plans and combination rules, against numpy written out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from service.core.config import EnsembleConfig
from service.core.ensemble import METHODS, check_weights, combine, plan_ensemble
from service.core.errors import InvalidArgument, ModelNotFound

LABEL_SETS = {"a": "imagenet-1k", "b": "imagenet-1k", "c": "imagenet-1k", "digits": "digits"}
CONFIGURED = {"pair": EnsembleConfig(models=("a", "b"), method="geometric", weights=(3, 1))}


def label_set_of(model: str) -> str:
    if model not in LABEL_SETS:
        raise ModelNotFound(f"unknown model {model}", model=model)
    return LABEL_SETS[model]


def probabilities(seed: int, shape=(3, 7)) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(0, 3, shape)
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


P = [probabilities(1), probabilities(2), probabilities(3)]
W = [0.5, 0.3, 0.2]


def test_mean_is_the_weighted_arithmetic_mean():
    expected = 0.5 * P[0] + 0.3 * P[1] + 0.2 * P[2]
    np.testing.assert_allclose(combine(P, W, "mean"), expected, rtol=1e-12)


def test_geometric_is_the_renormalised_weighted_product():
    product = P[0] ** 0.5 * P[1] ** 0.3 * P[2] ** 0.2
    expected = product / product.sum(-1, keepdims=True)
    np.testing.assert_allclose(combine(P, W, "geometric"), expected, rtol=1e-10)


def test_logit_mean_is_softmax_of_mean_logits():
    # Log-probabilities are logits up to a per-row constant, which softmax cancels.
    logits = [np.log(p) + offset for p, offset in zip(P, (5.0, -2.0, 11.0), strict=True)]
    mean_logits = sum(w * z for w, z in zip(W, logits, strict=True))
    exp = np.exp(mean_logits - mean_logits.max(-1, keepdims=True))
    expected = exp / exp.sum(-1, keepdims=True)
    np.testing.assert_allclose(combine(P, W, "logit_mean"), expected, rtol=1e-10)
    np.testing.assert_allclose(combine(P, W, "logit_mean"), combine(P, W, "geometric"),
                               rtol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_distributions_and_equal_members_are_fixed_points(method):
    combined = combine(P, W, method)
    np.testing.assert_allclose(combined.sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(combine([P[0], P[0]], [0.5, 0.5], method), P[0], rtol=1e-10)


def test_geometric_survives_an_underflowed_probability():
    zero = np.array([[1.0, 0.0, 0.0]])
    other = np.array([[0.2, 0.5, 0.3]])
    combined = combine([zero, other], [0.5, 0.5], "geometric")
    assert np.isfinite(combined).all() and combined.argmax() == 0


def test_weights_are_normalised_and_default_to_equal():
    assert check_weights(None, ["a", "b", "c"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert check_weights([3, 1], ["a", "b"]) == pytest.approx((0.75, 0.25))
    assert check_weights(["0.7", "0.3"], ["a", "b"]) == pytest.approx((0.7, 0.3))
    assert check_weights([0, 2], ["a", "b"]) == pytest.approx((0.0, 1.0))


@pytest.mark.parametrize(("weights", "message"), [
    ([1], "1 weights for 2 members"),
    ([1, 2, 3], "3 weights for 2 members"),
    ([1, -1], "non-negative"),
    ([0, 0], "not all be zero"),
    (["x", 1], "must be numbers"),
    ([float("nan"), 1], "finite"),
    ("1,2", "list of numbers"),
])
def test_bad_weights(weights, message):
    with pytest.raises(InvalidArgument, match=message):
        check_weights(weights, ["a", "b"])


def test_plan_from_members():
    plan = plan_ensemble(label_set_of, CONFIGURED, models=["a", "b", "c"], weights=[2, 1, 1])
    assert plan.members == ("a", "b", "c") and plan.method == "mean" and plan.name is None
    assert plan.weights == pytest.approx((0.5, 0.25, 0.25))


def test_named_plan_takes_the_configured_method_and_weights_unless_overridden():
    plan = plan_ensemble(label_set_of, CONFIGURED, ensemble="pair")
    assert (plan.name, plan.members, plan.method) == ("pair", ("a", "b"), "geometric")
    assert plan.weights == pytest.approx((0.75, 0.25))
    plan = plan_ensemble(label_set_of, CONFIGURED, ensemble="pair", method="mean",
                         weights=[1, 1])
    assert plan.method == "mean" and plan.weights == pytest.approx((0.5, 0.5))


def test_mixed_label_sets_name_members_and_sets():
    with pytest.raises(InvalidArgument, match="share one label set") as caught:
        plan_ensemble(label_set_of, {}, models=["a", "digits"])
    assert "a: imagenet-1k" in caught.value.message
    assert "digits: digits" in caught.value.message
    assert caught.value.details["label_sets"] == {"a": "imagenet-1k", "digits": "digits"}


def test_unknown_member_is_not_found():
    with pytest.raises(ModelNotFound):
        plan_ensemble(label_set_of, {}, models=["a", "nope"])


def test_unknown_ensemble_lists_the_configured_ones():
    with pytest.raises(ModelNotFound, match="configured ensembles") as caught:
        plan_ensemble(label_set_of, CONFIGURED, ensemble="trio")
    assert caught.value.details["configured_ensembles"] == ["pair"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"models": ["a"]}, "2 to 8 members"),
    ({"models": []}, "2 to 8 members"),
    ({"models": ["a", "a"]}, "distinct"),
    ({"models": ["a", "b"], "ensemble": "pair"}, "either models"),
    ({}, "either models"),
    ({"models": "a,b"}, "list of model names"),
    ({"models": ["a", "b"], "method": "median"}, "method must be one of"),
])
def test_bad_plans(kwargs, message):
    with pytest.raises(InvalidArgument, match=message):
        plan_ensemble(label_set_of, CONFIGURED, **kwargs)


def test_member_limit_is_a_parameter():
    with pytest.raises(InvalidArgument, match="2 to 2 members"):
        plan_ensemble(label_set_of, {}, models=["a", "b", "c"], max_members=2)
