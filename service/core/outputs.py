"""What one run of a model gives: its logits and, where the stored graph has them, its
features (the penultimate layer's activations, `model_store.outputs`).

Every stored graph computes both in one pass, so a batch is run once and each caller takes
the rows of the output it asked for: classify the logits, embed the features. A model stored
before the features output gives logits alone (`features` is None).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ModelOutputs:
    logits: np.ndarray  # (n, classes)
    features: np.ndarray | None = None  # (n, dim), or None for a graph without them

    def __len__(self) -> int:
        return len(self.logits)

    def rows(self, start: int, stop: int) -> ModelOutputs:
        """Rows start..stop of every output (views, no copy)."""
        return ModelOutputs(self.logits[start:stop],
                            None if self.features is None else self.features[start:stop])

    @staticmethod
    def joined(parts: Sequence[ModelOutputs]) -> ModelOutputs:
        """The parts' rows one after another (the slices of a request larger than a batch)."""
        if len(parts) == 1:
            return parts[0]
        features = [p.features for p in parts]
        return ModelOutputs(
            np.concatenate([p.logits for p in parts]),
            None if any(f is None for f in features) else np.concatenate(features))
