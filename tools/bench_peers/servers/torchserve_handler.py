"""TorchServe custom handler for the ONNX model, as TorchServe's documentation writes one: a
class with `initialize(context)` and `handle(data, context)`, given a batch of requests by
TorchServe's batch aggregator; each request's body is the image's raw bytes.

Packed into a model archive by torch-model-archiver (with classifier.py as an extra file)
and served by `torchserve --foreground`, with $PEER_CONFIG naming its settings.
"""

from __future__ import annotations

from typing import Any

from classifier import Classifier, load_config


class PeerHandler:
    def initialize(self, context: Any) -> None:
        self.classifier = Classifier(load_config())

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
        images = [bytes(row.get("data") or row.get("body")) for row in data]
        return [{"predictions": top} for top in self.classifier.classify(images)]
