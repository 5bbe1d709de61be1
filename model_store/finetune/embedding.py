"""Batched passes over image files: decode, make the model inputs, run them, keep the outputs.

One pass decodes each file once, makes one or more model inputs from it (the served
single crop, or augmented views), groups them in batches and hands each batch to a `Sink`:
the backbone's stored graph through ONNX Runtime (its `features` output, the same graph and
preprocessing that serve it), or, for --unfreeze, the backbone exported with the frozen
stages' output as well (`model_store.finetune.unfreeze`). A file that cannot be decoded is
skipped and reported, never fatal here. A tqdm bar counts the files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from model_store.finetune.images import UnreadableImage, load_image
from model_store.outputs import FEATURES
from model_store.repository import StoredModel

BATCH_SIZE = 32
# A sink maps a batch of model inputs [B, C, H, W] to its outputs, one row per input each.
Sink = Callable[[np.ndarray], tuple[np.ndarray, ...]]
ViewFunction = Callable[[Image.Image], list[np.ndarray]]


class StoredFeatures:
    """The `features` output of a stored graph, through ONNX Runtime on the CPU."""

    def __init__(self, stored: StoredModel):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(stored.onnx_path),
                                            providers=["CPUExecutionProvider"])

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray]:
        return (self.session.run([FEATURES], {"input": batch})[0],)


@dataclass
class Pass:
    """What one pass produced: per sink output, the rows of every view, and whose view each
    row is."""

    outputs: list[np.ndarray]
    owners: np.ndarray  # position in the pass's file list of each row's source file
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, why)

    def rows_of(self, positions: Sequence[int]) -> np.ndarray:
        """Row indices of every view of the files at `positions`."""
        return np.flatnonzero(np.isin(self.owners, np.asarray(positions)))


def run_pass(files: Sequence[Path], views: ViewFunction, sink: Sink, progress: bool,
             description: str, batch_size: int = BATCH_SIZE) -> Pass:
    """Decode every file, make its views, and run them through the sink in batches."""
    outputs: list[list[np.ndarray]] = []
    owners: list[int] = []
    skipped: list[tuple[Path, str]] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            results = sink(np.stack(pending))
            if not outputs:
                outputs.extend([] for _ in results)
            for collected, result in zip(outputs, results, strict=True):
                collected.append(result)
            pending.clear()

    for position, path in enumerate(tqdm(files, desc=description, unit="img",
                                         disable=not progress)):
        try:
            image = load_image(path)
        except UnreadableImage as exc:
            skipped.append((path, str(exc)))
            continue
        for view in views(image):
            pending.append(view)
            owners.append(position)
            if len(pending) == batch_size:
                flush()
    flush()
    stacked = [np.concatenate(collected) for collected in outputs]
    return Pass(stacked, np.asarray(owners, dtype=np.int64), skipped)
