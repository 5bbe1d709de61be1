"""LitServe serving the ONNX model, as LitServe's documentation writes an API: decode each
request, batch, predict, unbatch, encode; the image arrives as a multipart/form-data upload
(field `image`).

Run by the benchmark as `python litserve_peer.py PORT` from this folder, with $PEER_CONFIG
naming its settings.
"""

from __future__ import annotations

import sys
from typing import Any

import litserve as ls
import numpy as np
from classifier import Classifier, load_config


class PeerAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.classifier = Classifier(load_config())

    # No annotation on `request`: LitServe reads it to choose the request type, and without
    # one it passes the parsed form (multipart) or JSON body.
    def decode_request(self, request) -> np.ndarray:  # noqa: ANN001
        upload = request["image"]
        return self.classifier.preprocess(self.classifier.decode(upload.file.read()))

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.classifier.logits(batch)

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, logits: np.ndarray) -> dict[str, Any]:
        return {"predictions": self.classifier.top5(logits[None])[0]}


def main() -> None:
    config = load_config()
    api = PeerAPI(max_batch_size=config["max_batch_size"],
                  batch_timeout=config["batch_delay_ms"] / 1000)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=config["workers"],
                          timeout=120)
    server.run(host="127.0.0.1", port=int(sys.argv[1]), generate_client_file=False)


if __name__ == "__main__":
    main()
