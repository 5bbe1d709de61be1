"""The outputs of every stored graph: their names, their order, and which graphs have both.

Every `model.onnx` the store writes has two outputs, in this order: `logits` (float32
[N, classes]) and `features` (float32 [N, dim], the input of the final classifier layer after
global pooling; see `model_store.features`). Classify and embed requests then share one
graph and one set of batches. Logits stay first because the serving code reads output 0 by
position (`session.run(None, ...)[0]`, and the I/O-bound runner binds output 0 only).

Models stored before the features output existed have `logits` alone; `has_features` tells
them apart from the import record, which is written with the graph and pins its digest.
Torch-free: the serving side imports this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model_store.repository import StoredModel

LOGITS = "logits"
FEATURES = "features"
# Logits first: see the module docstring; nothing that reads output 0 changes.
OUTPUTS = (LOGITS, FEATURES)


def has_features(stored: StoredModel) -> bool:
    """Whether the stored graph has the `features` output (stored after it was added)."""
    return FEATURES in stored.record.get("outputs", ()) and bool(
        stored.record.get("features_dim"))


def features_dim(stored: StoredModel) -> int | None:
    """The stored graph's features width, or None for a graph without that output."""
    return int(stored.record["features_dim"]) if has_features(stored) else None
