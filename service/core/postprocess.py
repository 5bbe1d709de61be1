"""Logits to probabilities and top-k, and the label sets predictions are named from."""

from __future__ import annotations

from functools import cache

import numpy as np


@cache
def label_names(label_set: str) -> tuple[str, ...]:
    if label_set == "digits":
        return tuple(str(d) for d in range(10))
    if label_set == "imagenet-1k":
        # torchvision ships the ImageNet-1k class names with its weights records (offline).
        from torchvision.models import ResNet50_Weights

        return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    raise ValueError(f"unknown label set {label_set!r}")


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k(probabilities: np.ndarray, k: int, label_set: str) -> list[dict]:
    """[{"index", "label", "score"}] of one image's k best classes, best first."""
    names = label_names(label_set)
    k = min(k, len(probabilities))
    best = np.argpartition(-probabilities, k - 1)[:k]
    best = best[np.argsort(-probabilities[best], kind="stable")]
    return [{"index": int(i), "label": names[i], "score": float(probabilities[i])} for i in best]
