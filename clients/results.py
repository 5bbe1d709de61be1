"""What the SDK returns: small frozen dataclasses, the same whichever transport answered."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Keys of a REST result that have fields of their own; the rest go to `details`.
_RESULT_KEYS = ("model", "weights", "predictions", "timing_ms", "warning")


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    score: float


@dataclass(frozen=True)
class ClassifyResult:
    """One image's result, the same over REST and gRPC. `model` is the model that ran it
    (the chosen variant for `select`, the configured ensemble's name, or "ensemble", for
    `ensemble`); `weights` is "pretrained" or "random-init" (then `warning` says the
    predictions are meaningless); `details` holds what a particular call adds (crops, the
    ensemble's members, the selection, ...), as the server's JSON has them."""

    model: str
    weights: str
    predictions: list[Prediction]
    timing_ms: dict[str, float] = field(default_factory=dict)
    warning: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def top(self) -> Prediction:
        return self.predictions[0]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ClassifyResult:
        model = body.get("model") or body.get("ensemble") or "ensemble"
        return cls(
            model=model, weights=body.get("weights", "unknown"),
            predictions=[Prediction(int(p["index"]), str(p["label"]), float(p["score"]))
                         for p in body.get("predictions", [])],
            timing_ms=dict(body.get("timing_ms") or {}), warning=body.get("warning"),
            # A null detail is no detail, as over gRPC (whose parameters cannot be null).
            details={k: v for k, v in body.items()
                     if k not in _RESULT_KEYS and v is not None})


@dataclass(frozen=True)
class EmbedResult:
    """The features of a request's images, the same over REST and gRPC: `embeddings` holds
    one list of `dim` floats per image, in the order sent (plain lists, so the SDK needs no
    numpy; `array()` gives them as a numpy (n, dim) float32 array where numpy is installed).
    `normalized` says whether each was L2-normalised (the default)."""

    model: str
    weights: str
    dim: int
    normalized: bool
    embeddings: list[list[float]]
    timing_ms: dict[str, float] = field(default_factory=dict)
    warning: str | None = None

    def array(self) -> Any:
        import numpy as np

        return np.asarray(self.embeddings, dtype=np.float32).reshape(len(self.embeddings),
                                                                     self.dim)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> EmbedResult:
        return cls(model=body["model"], weights=body.get("weights", "unknown"),
                   dim=int(body["dim"]), normalized=bool(body.get("normalized", True)),
                   embeddings=[[float(x) for x in row] for row in body["embeddings"]],
                   timing_ms=dict(body.get("timing_ms") or {}), warning=body.get("warning"))


@dataclass(frozen=True)
class ModelInfo:
    """A model the server knows; `weights` is "pretrained", "random-init" or "missing".

    The fields are the same over either transport; `details` holds what the transport's
    listing adds (REST's `GET /models` describes much more than OIP's metadata)."""

    name: str
    family: str
    weights: str
    ready: bool
    input_size: int
    num_classes: int
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ModelInfo:
        return cls(name=body["name"], family=body.get("family", ""),
                   weights=body.get("weights", "unknown"), ready=bool(body.get("ready")),
                   input_size=int((body.get("input") or {}).get("size", 0)),
                   num_classes=int(body.get("num_classes", 0)),
                   details={k: v for k, v in body.items()
                            if k not in ("name", "family", "weights", "ready", "num_classes")})


@dataclass(frozen=True)
class DecodeNeeds:
    """The shorter side each model resizes a photo to, per crop scheme (what the server
    decodes for: `input.decode_sides` of GET /models), with the families and the default
    model: what `resize_for_model` needs to shrink photos without changing answers."""

    default_model: str
    sides: dict[str, dict[int, int]]
    families: dict[str, str]

    def side_for(self, models: list[str] | None, crops: int = 1,
                 family: str | None = None) -> int | None:
        """The largest side the named models (or the family's, or any model when neither is
        known, e.g. a configured ensemble) resize to; None when a name is unknown."""
        if family is not None:
            models = [name for name, fam in self.families.items() if fam == family]
            if not models:
                return None
        elif models is None:
            models = list(self.sides)
        if not models or any(name not in self.sides for name in models):
            return None
        sides = [self.sides[name].get(crops) for name in models]
        return None if None in sides else max(sides)
