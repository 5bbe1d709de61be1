"""Logits to probabilities and top-k, named by the model's class names; features to unit
vectors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.core.results import Prediction


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k(probabilities: np.ndarray, k: int, names: Sequence[str]) -> tuple[Prediction, ...]:
    """One image's k best classes, best first, named from `names` (one per output)."""
    k = min(k, len(probabilities))
    best = np.argpartition(-probabilities, k - 1)[:k]
    best = best[np.argsort(-probabilities[best], kind="stable")]
    return tuple(Prediction(int(i), names[i], float(probabilities[i])) for i in best)


def l2_normalized(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm (a zero row stays zero rather than becoming NaN)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.finfo(np.float32).tiny)
