"""What the data plane answers: frozen, typed results, one per image.

Every result is a `Classification` (the model that ran, its weights status, the top-k
predictions, the stage timings, and a warning for random-init weights); each composite adds
what it did (`details`: the crop scheme, the ensemble's members, the selection). `to_dict` is
the JSON form REST returns; an `Embedding` (one image's features) is the one result that is
not a classification; the OIP adapters read the fields, and carry `details` as response
parameters (contract.oip). `model` is the model that ran: the chosen variant for a selection,
the configured ensemble's name (or "ensemble") for an ensemble, which is also the request's
metric label (`service.core.dataplane`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from service.core.selection import Selection

ENSEMBLE = "ensemble"  # an ensemble of models given in the request has no name of its own

C = TypeVar("C", bound="Classification")


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "score": self.score}


@dataclass(frozen=True, kw_only=True)
class Classification:
    model: str
    weights: str  # pretrained | random-init | fine-tuned
    predictions: tuple[Prediction, ...]
    timing_ms: Mapping[str, float]
    warning: str | None = None

    def details(self) -> dict[str, Any]:
        """What this kind of result adds to a classification, as JSON values."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "weights": self.weights}
        if self.warning is not None:
            body["warning"] = self.warning
        body["predictions"] = [p.to_dict() for p in self.predictions]
        body["timing_ms"] = dict(self.timing_ms)
        return {**body, **self.details()}

    def extended(self, cls: type[C], **extra: Any) -> C:
        """This classification as a result of kind `cls`, with that kind's own fields."""
        return cls(**{f.name: getattr(self, f.name) for f in fields(Classification)}, **extra)


@dataclass(frozen=True, kw_only=True)
class MulticropResult(Classification):
    crops: int

    def details(self) -> dict[str, Any]:
        return {"crops": self.crops}


@dataclass(frozen=True, kw_only=True)
class MemberResult(Classification):
    """One member of an ensemble: its own prediction, and when it started and how long it
    took within the request."""

    started_ms: float
    latency_ms: float

    def details(self) -> dict[str, Any]:
        return {"started_ms": self.started_ms, "latency_ms": self.latency_ms}


@dataclass(frozen=True, kw_only=True)
class EnsembleResult(Classification):
    ensemble: str | None  # the configured ensemble's name, if the request named one
    models: tuple[str, ...]
    method: str
    member_weights: tuple[float, ...]
    crops: int
    members: tuple[MemberResult, ...]

    def details(self) -> dict[str, Any]:
        return {"ensemble": self.ensemble, "models": list(self.models), "method": self.method,
                "member_weights": list(self.member_weights), "crops": self.crops,
                "members": [m.to_dict() for m in self.members]}


@dataclass(frozen=True, kw_only=True)
class SelectResult(Classification):
    selection: Selection
    actual_latency_ms: float

    def details(self) -> dict[str, Any]:
        return {"selection": {**self.selection.to_dict(),
                              "actual_latency_ms": self.actual_latency_ms}}



@dataclass(frozen=True, kw_only=True, eq=False)
class Embedding:
    """One image's features (dim,) float32, L2-normalised when the request asked
    (`normalized`). A request's images give one each, from one batch; REST's body is
    `embeddings_to_dict` of them all, OIP's FEATURES output their rows stacked."""

    model: str
    weights: str  # pretrained | random-init | fine-tuned
    vector: np.ndarray
    normalized: bool
    timing_ms: Mapping[str, float]
    warning: str | None = None

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])

    def details(self) -> dict[str, Any]:
        return {"normalized": self.normalized}


# What the data plane answers a request with: one result per image.
Result = Classification | Embedding


def embeddings_to_dict(results: Sequence[Embedding]) -> dict[str, Any]:
    """REST's body for an embed request: the model, its weights, the width and every image's
    vector, in the order sent (and the random-init warning where it applies)."""
    first = results[0]
    body: dict[str, Any] = {"model": first.model, "weights": first.weights}
    if first.warning is not None:
        body["warning"] = first.warning
    body.update(dim=first.dim, normalized=first.normalized,
                embeddings=[r.vector.tolist() for r in results],
                timing_ms=dict(first.timing_ms))
    return body
