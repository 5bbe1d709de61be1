"""ConvZoo's Python SDK: classify images with the ConvZoo service over REST or gRPC.

    from clients import ConvZooClient

    with ConvZooClient("http://localhost:3000") as client:        # or transport="grpc",
        result = client.classify("cat.jpg", model="resnet50")      # "localhost:3001"
        print(result.model, result.top.label, result.top.score)
        vectors = client.embed("cat.jpg", model="efficientnet_lite0").embeddings

`AsyncConvZooClient` has the same methods as coroutines. Errors are `ConvZooError`
subclasses (`clients.errors`). `python -m clients --help` is the command-line front end.
"""

from clients.client import AsyncConvZooClient, ConvZooClient
from clients.errors import (
    AuthenticationError,
    ConvZooError,
    DeadlineExceededError,
    FeaturesUnavailableError,
    InvalidArgumentError,
    ModelNotFoundError,
    NoVariantFitsError,
    OverloadedError,
    PayloadTooLargeError,
    ServerError,
    UnavailableError,
)
from clients.results import ClassifyResult, EmbedResult, ModelInfo, Prediction
from clients.transport import RetryPolicy

__all__ = [
    "AsyncConvZooClient", "AuthenticationError", "ClassifyResult", "ConvZooClient",
    "ConvZooError", "DeadlineExceededError", "EmbedResult", "FeaturesUnavailableError",
    "InvalidArgumentError", "ModelInfo",
    "ModelNotFoundError", "NoVariantFitsError", "OverloadedError", "PayloadTooLargeError",
    "Prediction", "RetryPolicy", "ServerError", "UnavailableError",
]
