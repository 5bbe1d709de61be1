"""PyTriton (NVIDIA's Triton Inference Server, with the Python callables behind Triton's
python backend) serving the ONNX model, as PyTriton's documentation binds a model: a
`@batch` inference callable per model instance, Triton's dynamic batcher in front. The
image arrives as a BYTES tensor over Triton's KServe v2 HTTP protocol (binary extension).

Run by the benchmark as `python pytriton_peer.py HTTP_PORT GRPC_PORT METRICS_PORT` from this
folder, with $PEER_CONFIG naming its settings.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

import numpy as np
from classifier import Classifier, load_config
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

MODEL_NAME = "efficientnet_lite0"


def inference_callable(classifier: Classifier) -> Callable[..., dict[str, np.ndarray]]:
    @batch
    def infer(image: np.ndarray) -> dict[str, np.ndarray]:
        top = classifier.classify([row[0] for row in image])
        labels = np.array([[p["label"].encode() for p in row] for row in top], dtype=np.bytes_)
        scores = np.array([[p["score"] for p in row] for row in top], dtype=np.float32)
        return {"labels": labels, "scores": scores}

    return infer


def main() -> None:
    # SIGTERM (how the benchmark stops its servers) as PyTriton's documented SIGINT, so that
    # serve() returns and the workspace it made under ~/.cache/pytriton is removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    config = load_config()
    http_port, grpc_port, metrics_port = (int(port) for port in sys.argv[1:4])
    triton_config = TritonConfig(http_address="127.0.0.1", http_port=http_port,
                                 grpc_address="127.0.0.1", grpc_port=grpc_port,
                                 metrics_address="127.0.0.1", metrics_port=metrics_port)
    with Triton(config=triton_config) as triton:
        triton.bind(
            model_name=MODEL_NAME,
            # one callable per model instance: Triton runs the instances side by side
            infer_func=[inference_callable(Classifier(config))
                        for _ in range(config["workers"])],
            inputs=[Tensor(name="image", dtype=np.bytes_, shape=(1,))],
            outputs=[Tensor(name="labels", dtype=np.bytes_, shape=(5,)),
                     Tensor(name="scores", dtype=np.float32, shape=(5,))],
            config=ModelConfig(max_batch_size=config["max_batch_size"], batcher=DynamicBatcher(
                max_queue_delay_microseconds=int(config["batch_delay_ms"] * 1000))),
            strict=True)
        triton.serve()


if __name__ == "__main__":
    main()
