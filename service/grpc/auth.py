"""gRPC authentication: a server interceptor that asks every RPC for an API key in its
metadata (`authorization: Bearer <key>` or `x-api-key: <key>`), through the same check as REST
(`service.core.auth`). The standard health service stays open, as /livez and /readyz do: probes
carry no key. A missing or wrong key ends the RPC with UNAUTHENTICATED, from the core's table,
and the error code `unauthenticated` in the trailing metadata (`service.grpc.status`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health

from service.core.auth import ApiKeys
from service.core.errors import Unauthenticated
from service.grpc.status import abort

log = logging.getLogger("convzoo.grpc.auth")

OPEN_SERVICES = (health.SERVICE_NAME,)


def _refusal(handler: grpc.RpcMethodHandler, error: Unauthenticated) -> grpc.RpcMethodHandler:
    """A handler of the same kind (unary or streaming, either way) that only refuses."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await abort(context, error)

    make = {(False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler}
    return make[handler.request_streaming, handler.response_streaming](
        refuse, request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer)


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, keys: ApiKeys) -> None:
        self.keys = keys

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails],
                                         Awaitable[grpc.RpcMethodHandler]],
            details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        service = details.method.lstrip("/").split("/", 1)[0]
        if handler is None or service in OPEN_SERVICES:
            return handler  # an unknown method stays UNIMPLEMENTED
        metadata = {key: value for key, value in details.invocation_metadata or ()
                    if isinstance(value, str)}
        try:
            self.keys.check(metadata.get("authorization"), metadata.get("x-api-key"))
        except Unauthenticated as error:
            log.info("refused %s: %s", details.method, error.message)
            return _refusal(handler, error)
        return handler
