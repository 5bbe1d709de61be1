"""How a domain error ends a gRPC call: the status code of the core's one table, the bounded
message, and in the trailing metadata the error's code (`convzoo-error-code`) and any
Retry-After (`retry-after`), the same code and wait a REST client reads from the body and the
header, so the SDK raises one exception type for one error whatever the transport."""

from __future__ import annotations

import grpc

from contract.errors import ERROR_CODE_KEY, RETRY_AFTER_KEY
from service.core.errors import (
    ServiceError,
    client_message,
    grpc_status_name,
    retry_after_header,
)


def status_code(error: ServiceError) -> grpc.StatusCode:
    return grpc.StatusCode[grpc_status_name(error)]


def trailing_metadata(error: ServiceError) -> tuple[tuple[str, str], ...]:
    metadata = [(ERROR_CODE_KEY, str(error.code))]
    retry_after = retry_after_header(error)
    if retry_after:
        metadata.append((RETRY_AFTER_KEY, retry_after))
    return tuple(metadata)


async def abort(context: grpc.aio.ServicerContext, error: ServiceError) -> None:
    """End the call with `error` (raises grpc.aio.AbortError, as `context.abort` does)."""
    await context.abort(status_code(error), client_message(error.message),
                        trailing_metadata=trailing_metadata(error))
