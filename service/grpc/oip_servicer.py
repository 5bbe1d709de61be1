"""`inference.GRPCInferenceService`: each RPC converts (`service.oip_codec`), calls the data
plane and ends a failed call through the core's one error table (`service.grpc.status`: the
status code, and the error's code and Retry-After in the trailing metadata).

A client's gRPC deadline is the transport's bound of the request's deadline (with the
`timeout_s` parameter, the earlier of the two), so requests whose caller has given up are
dropped from the batcher queue instead of reaching the model.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from contract._proto import grpc_predict_v2_pb2 as pb
from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from contract.oip import parameters_from_proto
from service import oip_codec as codec
from service.core.dataplane import DataPlane
from service.core.errors import ServiceError
from service.grpc.status import abort

log = logging.getLogger("convzoo.grpc")

ENDPOINT = "grpc_infer"  # the metric label of inference requests


@asynccontextmanager
async def status_from_errors(context: grpc.aio.ServicerContext, rpc: str
                             ) -> AsyncIterator[None]:
    """Ends the RPC with the status the core's table gives a domain error."""
    try:
        yield
    except ServiceError as error:
        await abort(context, error)
    except grpc.aio.AbortError:
        raise
    except Exception:
        log.exception("unexpected error in %s", rpc)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")


class OipServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
                         ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest,
                          context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.plane.ready)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**codec.server_metadata())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
                         ) -> pb.ModelReadyResponse:
        async with status_from_errors(context, "ModelReady"):
            ready = self.plane.model_ready(request.name)
            codec.check_version(request.name, request.version)
            return pb.ModelReadyResponse(ready=ready)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        """An empty name means the default model, as for ModelInfer."""
        async with status_from_errors(context, "ModelMetadata"):
            signature = self.plane.signature(request.name or None)
            codec.check_version(signature.name, request.version)
            return codec.model_metadata_to_proto(codec.model_metadata(signature))

    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
                         ) -> pb.ModelInferResponse:
        async with (status_from_errors(context, "ModelInfer"),
                    self.plane.observe(ENDPOINT, request.model_name or None) as observation):
            call = codec.infer_call(self.plane.spec, request.model_name, request.model_version,
                                    codec.inputs_from_proto(request),
                                    parameters_from_proto(request.parameters),
                                    [output.name for output in request.outputs],
                                    context.time_remaining())
            observation.label = call.requested
            results = await self.plane.answer(call.request)
            observation.ran(results)
            return codec.infer_response_to_proto(
                results[0].model, request.id, codec.output_tensors(results, call.outputs),
                codec.response_parameters(results), raw=bool(request.raw_input_contents))

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest,
                              context: grpc.aio.ServicerContext) -> pb.RepositoryIndexResponse:
        async with status_from_errors(context, "RepositoryIndex"):
            index = codec.repository_index(self.plane.repository_index(request.ready))
            return pb.RepositoryIndexResponse(
                models=[pb.RepositoryIndexResponse.ModelIndex(**m) for m in index])
