"""Plain BentoML serving the ONNX model, as BentoML's documentation writes a service: one
class, a batchable API taking the uploaded images (multipart/form-data field `images`).

Run by the benchmark as `bentoml serve bentoml_peer:PeerClassifier` from this folder, with
$PEER_CONFIG naming its settings (read here because the decorators need them).
"""

from __future__ import annotations

from typing import Any

import bentoml
import numpy as np
from classifier import Classifier, load_config
from PIL.Image import Image

CONFIG = load_config()


@bentoml.service(workers=CONFIG["workers"], traffic={"timeout": 120})
class PeerClassifier:
    def __init__(self) -> None:
        self.classifier = Classifier(CONFIG)

    @bentoml.api(batchable=True, max_batch_size=CONFIG["max_batch_size"])
    def classify(self, images: list[Image]) -> list[list[dict[str, Any]]]:
        # BentoML opens the upload lazily; preprocess's convert("RGB") decodes it in full.
        batch = np.stack([self.classifier.preprocess(image) for image in images])
        return self.classifier.top5(self.classifier.logits(batch))
