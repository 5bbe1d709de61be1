"""`inference.GRPCInferenceService`: each RPC converts (`service.oip_codec`), calls the core and
maps domain errors to gRPC status codes through the core's one table (`GRPC_STATUS`).

A client's gRPC deadline becomes the core's deadline, so requests whose caller has given up
are dropped from the batcher queue instead of reaching the model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from contract._proto import grpc_predict_v2_pb2 as pb
from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from service import oip_codec as codec
from service.core.errors import Overloaded, ServiceError, client_message, grpc_status_name
from service.core.inference import InferenceCore

log = logging.getLogger("convzoo.grpc")


@asynccontextmanager
async def status_from_errors(context: grpc.aio.ServicerContext, rpc: str
                             ) -> AsyncIterator[None]:
    """Ends the RPC with the status the core's table gives a domain error."""
    try:
        yield
    except ServiceError as error:
        trailing = ()
        if isinstance(error, Overloaded):
            trailing = (("retry-after", str(max(1, round(error.retry_after_s)))),)
        await context.abort(grpc.StatusCode[grpc_status_name(error)],
                            client_message(error.message), trailing_metadata=trailing)
    except grpc.aio.AbortError:
        raise
    except Exception:
        log.exception("unexpected error in %s", rpc)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")


def deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class OipServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, core: InferenceCore) -> None:
        self.core = core

    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
                         ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest,
                          context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.core.ready)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**codec.server_metadata())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
                         ) -> pb.ModelReadyResponse:
        async with status_from_errors(context, "ModelReady"):
            ready = codec.model_ready(self.core, request.name, request.version)
            return pb.ModelReadyResponse(ready=ready)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        async with status_from_errors(context, "ModelMetadata"):
            info = codec.model_metadata(self.core, request.name, request.version)
            return codec.model_metadata_to_proto(info)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
                         ) -> pb.ModelInferResponse:
        async with (status_from_errors(context, "ModelInfer"),
                    self.core.observe("grpc_infer", request.model_name or None)):
            call = codec.classify_call(self.core, request.model_name, request.model_version,
                                       codec.inputs_from_proto(request),
                                       codec.parameters_from_proto(request.parameters),
                                       [output.name for output in request.outputs])
            results = await codec.run(self.core, call, deadline(context))
            return codec.infer_response_to_proto(
                call.model or results[0]["model"], request.id,
                codec.output_tensors(results, call.outputs),
                codec.response_parameters(results), raw=bool(request.raw_input_contents))

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest,
                              context: grpc.aio.ServicerContext) -> pb.RepositoryIndexResponse:
        async with status_from_errors(context, "RepositoryIndex"):
            index = codec.repository_index(self.core, ready_only=request.ready)
            return pb.RepositoryIndexResponse(
                models=[pb.RepositoryIndexResponse.ModelIndex(**m) for m in index])
