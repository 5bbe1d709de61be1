"""Ensembles: which engines a request combines, with what weights, and how.

An ensemble is a composition of engines the core already serves, not a model of its own: the
core runs each member through its own preprocessing and batcher and hands the members'
probabilities to `combine`. This module owns the request's plan (members, named ensembles
from `config.ensembles`, weights, method) and its validation, and the combination rules.
Averaging independently trained networks' outputs is the classic test-time ensemble
(Krizhevsky et al. 2012, §6: "averaging the predictions of five similar CNNs"; Szegedy et al.
2014, §7: seven GoogLeNets).

Methods, with normalised weights w_i and member probabilities p_i:

* `mean` (default) — sum_i w_i p_i, the arithmetic mean of the probabilities.
* `geometric` — prod_i p_i ** w_i, renormalised to sum to 1 (a product of experts: a class
  must be likely under every member).
* `logit_mean` — softmax(sum_i w_i log p_i), the mean of the members' *log-probabilities*,
  not of raw logits. Log-probabilities are the logits less a per-image constant
  (logsumexp), which the softmax cancels because the weights sum to 1, so this is exactly
  the mean of logits; using them keeps the core's one output (probabilities) as the only
  input, whatever a backend's logit offset. The same identity makes it equal to `geometric`
  (renormalising a weighted geometric mean is that softmax); both names are accepted because
  both are how people ask for it, and the unit tests check that they agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from service.core.errors import InvalidArgument, ModelNotFound

METHODS = ("mean", "geometric", "logit_mean")
DEFAULT_METHOD = "mean"
DEFAULT_MAX_MEMBERS = 8
# log(0) for a probability that underflowed float32: the smallest normal float32 instead.
_LOG_FLOOR = float(np.finfo(np.float32).tiny)


@dataclass(frozen=True)
class EnsemblePlan:
    """What one ensemble request runs: members in order, normalised weights, method."""

    members: tuple[str, ...]
    weights: tuple[float, ...]
    method: str
    name: str | None = None  # the configured ensemble's name, if the request named one


def check_method(value: Any) -> str:
    if value not in METHODS:
        raise InvalidArgument(f"method must be one of {', '.join(METHODS)}, got {value!r}",
                              valid_methods=list(METHODS))
    return value


def check_weights(weights: Sequence[Any] | None, members: Sequence[str]) -> tuple[float, ...]:
    """Weights normalised to sum to 1 (equal when None); one per member, >= 0, not all 0."""
    if weights is None:
        return tuple(1.0 / len(members) for _ in members)
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise InvalidArgument(f"weights must be a list of numbers, got {weights!r}")
    if len(weights) != len(members):
        raise InvalidArgument(f"{len(weights)} weights for {len(members)} members "
                              f"({', '.join(members)}): give one weight per member")
    try:
        values = [float(w) for w in weights]
    except (TypeError, ValueError):
        raise InvalidArgument(f"weights must be numbers, got {list(weights)!r}") from None
    if any(isinstance(w, bool) for w in weights) or not all(map(math.isfinite, values)):
        raise InvalidArgument(f"weights must be finite numbers, got {list(weights)!r}")
    if any(v < 0 for v in values):
        raise InvalidArgument(f"weights must be non-negative, got {values}")
    total = sum(values)
    if total == 0:
        raise InvalidArgument("weights must not all be zero")
    return tuple(v / total for v in values)


class ConfiguredEnsemble(Protocol):
    """A configured ensemble (service.core.config.EnsembleConfig)."""

    models: Sequence[str]
    weights: Sequence[float] | None
    method: str | None


def plan_ensemble(label_set_of: Callable[[str], str],
                  configured: Mapping[str, ConfiguredEnsemble], *,
                  models: Sequence[str] | None = None, ensemble: str | None = None,
                  weights: Sequence[Any] | None = None, method: str | None = None,
                  max_members: int = DEFAULT_MAX_MEMBERS) -> EnsemblePlan:
    """Validate a request's members (given, or a configured ensemble's) into a plan.

    `label_set_of(model)` names a model's label set and raises ModelNotFound for an unknown
    one. A request's weights and method override a configured ensemble's.
    """
    if (models is None) == (ensemble is None):
        raise InvalidArgument("give either models (a list of 2 or more) or the name of a "
                              "configured ensemble, not both or neither",
                              configured_ensembles=sorted(configured))
    if ensemble is not None:
        if not isinstance(ensemble, str) or ensemble not in configured:
            raise ModelNotFound(f"unknown ensemble {ensemble!r}; configured ensembles: "
                                f"{sorted(configured) or 'none'}", ensemble=ensemble,
                                configured_ensembles=sorted(configured))
        entry = configured[ensemble]
        models = list(entry.models)
        weights = entry.weights if weights is None else weights
        method = method or entry.method
    if isinstance(models, str) or not all(isinstance(m, str) for m in models):
        raise InvalidArgument(f"models must be a list of model names, got {models!r}")
    members = tuple(models)
    if not 2 <= len(members) <= max_members:
        raise InvalidArgument(f"an ensemble needs 2 to {max_members} members, got "
                              f"{len(members)}: {list(members)}")
    if len(set(members)) != len(members):
        raise InvalidArgument(f"ensemble members must be distinct, got {list(members)}; "
                              "use weights to favour one")
    label_sets = {m: label_set_of(m) for m in members}
    if len(set(label_sets.values())) > 1:
        raise InvalidArgument("ensemble members must share one label set, got "
                              + ", ".join(f"{m}: {s}" for m, s in label_sets.items()),
                              label_sets=label_sets)
    return EnsemblePlan(members, check_weights(weights, members),
                        check_method(method or DEFAULT_METHOD), ensemble)


def combine(probabilities: Sequence[np.ndarray], weights: Sequence[float],
            method: str) -> np.ndarray:
    """Combine members' probabilities (each (..., classes)) with normalised weights."""
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in probabilities])
    w = np.asarray(weights, dtype=np.float64).reshape((-1,) + (1,) * (stacked.ndim - 1))
    if method == "mean":
        return (w * stacked).sum(axis=0)
    mean_log = (w * np.log(np.maximum(stacked, _LOG_FLOOR))).sum(axis=0)
    if method == "geometric":
        product = np.exp(mean_log)
        return product / product.sum(axis=-1, keepdims=True)
    if method == "logit_mean":
        shifted = np.exp(mean_log - mean_log.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    raise InvalidArgument(f"method must be one of {', '.join(METHODS)}, got {method!r}")
