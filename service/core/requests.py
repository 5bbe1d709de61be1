"""What a client can ask the data plane for: frozen, typed requests, each with its deadline.

The adapters build these from their wire forms (REST's pydantic request models, OIP tensors
and parameters), parsing wire values once with `service.core.arguments`; the data plane
checks what they mean (a known model, top_k within the configured maximum, a crop scheme, an
ensemble's members) and never sees a wire string. A request may carry several images: each
is answered on its own (composites fan out over them), a classification as one batch.

`deadline` is `time.monotonic()` seconds, or None. `deadline_for` is the one rule every
adapter follows: the earliest of the transport's own deadline (gRPC's) and the client's
timeout (REST's `timeout_s` option; OIP's `timeout_s` parameter or, over OIP REST, the
`convzoo-timeout-s` header); past it, queued work is dropped and the client gets
`deadline_exceeded`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

DEFAULT_TOP_K = 5
DEFAULT_MULTICROP = 10  # AlexNet's ten crops


def deadline_for(*timeouts_s: float | None) -> float | None:
    """The deadline of a request given the timeouts (seconds from now) that apply to it."""
    given = [seconds for seconds in timeouts_s if seconds is not None]
    return time.monotonic() + min(given) if given else None


@dataclass(frozen=True, kw_only=True)
class Request:
    top_k: int = DEFAULT_TOP_K
    deadline: float | None = None


@dataclass(frozen=True, kw_only=True)
class ClassifyRequest(Request):
    """Encoded images through one model (the default when None), as one batch."""

    images: tuple[bytes, ...]
    model: str | None = None


@dataclass(frozen=True, kw_only=True)
class EmbedRequest(Request):
    """Encoded images through one model (the default when None), as one batch, for their
    features: L2-normalised when `normalize`. `top_k` does not apply."""

    images: tuple[bytes, ...]
    model: str | None = None
    normalize: bool = True


@dataclass(frozen=True, kw_only=True, eq=False)
class PixelsRequest(Request):
    """Images already preprocessed to the model's input, (n, C, size, size) float32."""

    pixels: np.ndarray
    model: str | None = None


@dataclass(frozen=True, kw_only=True)
class MulticropRequest(Request):
    """Each image scored on a crop scheme's crops, the probabilities averaged."""

    images: tuple[bytes, ...]
    model: str | None = None
    crops: int = DEFAULT_MULTICROP
    # The shorter side the crops are cut from; None: the scheme's (service.core.crops).
    crop_resize: int | None = None


@dataclass(frozen=True, kw_only=True)
class EnsembleRequest(Request):
    """Each image through several models, combined: the members given, or a configured
    ensemble's; weights and method override a configured ensemble's."""

    images: tuple[bytes, ...]
    models: tuple[str, ...] | None = None
    ensemble: str | None = None
    weights: tuple[float, ...] | None = None
    method: str | None = None
    crops: int = 1


@dataclass(frozen=True, kw_only=True)
class SelectRequest(Request):
    """Each image through the family's variant that best fits a latency budget and/or an
    accuracy floor."""

    images: tuple[bytes, ...]
    family: str | None
    latency_budget_ms: float | None = None
    min_top1: float | None = None
    allow_untrained: bool = False


@dataclass(frozen=True)
class FrontierRequest:
    """A family's accuracy/latency table and frontier, measured now."""

    family: str | None
    allow_untrained: bool = False
