"""The model code a user of any serving system would write once, shared by every peer.

Each peer server (BentoML, LitServe, TorchServe, PyTriton) wraps this same class in its own
API, so that the peers differ only in the serving system around it: the same ONNX file on
ONNX Runtime's CPU provider, the same Pillow decode (full decode, `convert("RGB")`), resize
of the shorter side, centre crop, normalisation and softmax top-5, in plain numpy as a
model's documentation would show it.

This file runs in the peers' own virtual environments (onnxruntime, Pillow and numpy only),
never inside ConvZoo: it imports nothing of the project. Its settings come from the JSON
file that the benchmark writes and names in $PEER_CONFIG.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def load_config() -> dict[str, Any]:
    return json.loads(Path(os.environ["PEER_CONFIG"]).read_text())


class Classifier:
    def __init__(self, config: dict[str, Any]):
        options = ort.SessionOptions()
        # `workers` copies of the model share the cores: threads = cores / workers.
        options.intra_op_num_threads = config["threads"]
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(config["model"], options,
                                            providers=["CPUExecutionProvider"])
        self.labels = config["labels"]
        preprocessing = config["preprocessing"]
        self.resize = preprocessing["resize"]
        self.size = preprocessing["size"]
        self.resample = _RESAMPLE[preprocessing["interpolation"]]
        self.mean = np.asarray(preprocessing["mean"], np.float32)
        self.std = np.asarray(preprocessing["std"], np.float32)

    def decode(self, data: bytes) -> Image.Image:
        return Image.open(io.BytesIO(data))

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """Resize the shorter side, centre-crop, normalise: a (3, size, size) float32."""
        image = image.convert("RGB")
        width, height = image.size
        scale = self.resize / min(width, height)
        image = image.resize((round(width * scale), round(height * scale)), self.resample)
        left = round((image.width - self.size) / 2)
        top = round((image.height - self.size) / 2)
        image = image.crop((left, top, left + self.size, top + self.size))
        pixels = np.asarray(image, np.float32) / 255.0
        return ((pixels - self.mean) / self.std).transpose(2, 0, 1)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"input": batch})[0]

    def top5(self, logits: np.ndarray) -> list[list[dict[str, Any]]]:
        """For each image, its five best classes: [{"label", "score"}], best first."""
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = exp / exp.sum(axis=1, keepdims=True)
        best = np.argsort(-probabilities, axis=1)[:, :5]
        return [[{"label": self.labels[i], "score": float(row[i])} for i in indices]
                for row, indices in zip(probabilities, best, strict=True)]

    def classify(self, images: list[bytes]) -> list[list[dict[str, Any]]]:
        batch = np.stack([self.preprocess(self.decode(data)) for data in images])
        return self.top5(self.logits(batch))
