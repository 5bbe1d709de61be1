"""Batched passes over image files: decode, make the model inputs, run them, keep the outputs.

One pass decodes each file once, makes one or more model inputs from it (the served
single crop, or augmented views), groups them in batches and hands each batch to every
`Sink`: the backbone's stored graph through ONNX Runtime (its `features` output, the same
graph and preprocessing that serve it), and, for --unfreeze, the PyTorch backbone up to the
first stage that will train. A file that cannot be decoded is skipped and reported, never
fatal here. A tqdm bar counts the files.
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
from model_store.store import StoredModel

BATCH_SIZE = 32
# A sink maps a batch of model inputs [B, C, H, W] to one row of output per input.
Sink = Callable[[np.ndarray], np.ndarray]
ViewFunction = Callable[[Image.Image], list[np.ndarray]]


class StoredFeatures:
    """The `features` output of a stored graph, through ONNX Runtime on the CPU."""

    def __init__(self, stored: StoredModel):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(stored.onnx_path),
                                            providers=["CPUExecutionProvider"])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([FEATURES], {"input": batch})[0]


@dataclass
class Pass:
    """What one pass produced: per sink, the rows of every view, and whose view each row is."""

    outputs: list[np.ndarray]
    owners: np.ndarray  # position in the pass's file list of each row's source file
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, why)

    def rows_of(self, positions: Sequence[int]) -> np.ndarray:
        """Row indices of every view of the files at `positions`."""
        return np.flatnonzero(np.isin(self.owners, np.asarray(positions)))


def run_pass(files: Sequence[Path], views: ViewFunction, sinks: Sequence[Sink],
             progress: bool, description: str, batch_size: int = BATCH_SIZE) -> Pass:
    """Decode every file, make its views, and run them through every sink in batches."""
    outputs: list[list[np.ndarray]] = [[] for _ in sinks]
    owners: list[int] = []
    skipped: list[tuple[Path, str]] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            batch = np.stack(pending)
            for collected, sink in zip(outputs, sinks, strict=True):
                collected.append(sink(batch))
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
    stacked = [np.concatenate(collected) if collected else np.empty((0,), np.float32)
               for collected in outputs]
    return Pass(stacked, np.asarray(owners, dtype=np.int64), skipped)
