"""The Open Inference Protocol gRPC adapter: a `grpc.aio` server in the BentoML process.

BentoML's `@bentoml.service` has no gRPC serving, so `GrpcServer` runs its own on the service's
event loop, started and stopped by `service.service.ConvZoo`, over the same `DataPlane` as
the REST routes (batching and metrics are shared; there is no HTTP hop).
"""

from service.grpc.server import GrpcServer

__all__ = ["GrpcServer"]
