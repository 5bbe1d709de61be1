"""Domain errors of the serving core, and the two tables that map them onto protocols.

Every error a client can cause is one of these, with a stable `code` and a message that says
what is wrong. The REST adapter uses `HTTP_STATUS`, the gRPC adapter `GRPC_STATUS` (names of
`grpc.StatusCode` members, so that the core does not import grpc). What reaches a client
passes through `client_message`: bounded in size and always encodable.
"""

from __future__ import annotations

from typing import Any

# gRPC clients read a status message from HTTP/2 trailers of 8 KiB by default; past that they
# report "Stream removed" instead of the reason (issue 14: the errors of 10,000 inputs made a
# 90 KB message). 1 KiB of UTF-8 stays under 8 KiB even percent-encoded (grpc-message), and
# keeps REST error bodies as short.
MAX_CLIENT_MESSAGE_BYTES = 1024


def client_message(text: str, limit: int = MAX_CLIENT_MESSAGE_BYTES) -> str:
    """`text` as a client may see it: at most `limit` bytes of UTF-8 plus a count of what was
    cut, with anything UTF-8 cannot encode (a lone surrogate from a client's JSON) escaped."""
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= limit:
        return data.decode("utf-8")
    head = data[:limit].decode("utf-8", "ignore")
    return f"{head}... ({len(data) - len(head.encode())} more bytes)"


class ServiceError(Exception):
    code = "internal"

    def __init__(self, message: str, **details: Any):
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        # Details can echo client input (a model name): bounded like the message.
        details = {key: client_message(value) if isinstance(value, str) else value
                   for key, value in self.details.items()}
        return {"error": {"code": self.code, "message": client_message(self.message),
                          **details}}


class InvalidArgument(ServiceError):
    code = "invalid_argument"


class InvalidImage(InvalidArgument):
    code = "invalid_image"


class ImageTooLarge(InvalidArgument):
    code = "image_too_large"


class PayloadTooLarge(InvalidArgument):
    code = "payload_too_large"


class ModelNotFound(ServiceError):
    code = "model_not_found"


class NoVariantFits(ServiceError):
    code = "no_variant_fits"


class Overloaded(ServiceError):
    code = "overloaded"

    def __init__(self, message: str, retry_after_s: float = 1.0, **details: Any):
        super().__init__(message, retry_after_s=retry_after_s, **details)
        self.retry_after_s = retry_after_s


class NotReady(ServiceError):
    code = "not_ready"


class DeviceUnavailable(NotReady):
    """The configuration asks for a GPU (`device: cuda`, `decode: gpu`) that is not usable."""
    code = "device_unavailable"


class DeadlineExceeded(ServiceError):
    code = "deadline_exceeded"


class Unauthenticated(ServiceError):
    code = "unauthenticated"


class RequestTimeout(ServiceError):
    """The client did not send its request body in time (`body_timeout_s`)."""

    code = "request_timeout"


HTTP_STATUS: dict[type[ServiceError], int] = {
    InvalidArgument: 400,
    InvalidImage: 400,
    ImageTooLarge: 413,
    PayloadTooLarge: 413,
    Unauthenticated: 401,
    ModelNotFound: 404,
    NoVariantFits: 422,
    Overloaded: 503,
    NotReady: 503,
    DeadlineExceeded: 504,
    RequestTimeout: 408,
    ServiceError: 500,
}

GRPC_STATUS: dict[type[ServiceError], str] = {
    InvalidArgument: "INVALID_ARGUMENT",
    InvalidImage: "INVALID_ARGUMENT",
    ImageTooLarge: "INVALID_ARGUMENT",
    PayloadTooLarge: "RESOURCE_EXHAUSTED",
    Unauthenticated: "UNAUTHENTICATED",
    ModelNotFound: "NOT_FOUND",
    NoVariantFits: "FAILED_PRECONDITION",
    Overloaded: "RESOURCE_EXHAUSTED",
    NotReady: "UNAVAILABLE",
    DeadlineExceeded: "DEADLINE_EXCEEDED",
    RequestTimeout: "DEADLINE_EXCEEDED",
    ServiceError: "INTERNAL",
}


def _lookup(table: dict, error: ServiceError):
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return table[ServiceError]


def http_status(error: ServiceError) -> int:
    return _lookup(HTTP_STATUS, error)


def grpc_status_name(error: ServiceError) -> str:
    return _lookup(GRPC_STATUS, error)
