"""Domain errors of the serving core, and the one table that maps them onto protocols.

Every error a client can cause is one of these, with a stable `code` (`contract.errors`, which
the SDK reads back) and a message that says what is wrong. `STATUS` gives each its HTTP
status and its gRPC status code (the name of a `grpc.StatusCode` member, so that the core does
not import grpc); every adapter maps errors through it, and puts the code and any Retry-After
beside the status. What reaches a client passes through `client_message`: bounded in size and
always encodable.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from contract.errors import ErrorCode

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
    code = ErrorCode.INTERNAL

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
    code = ErrorCode.INVALID_ARGUMENT


class InvalidImage(InvalidArgument):
    code = ErrorCode.INVALID_IMAGE


class ImageTooLarge(InvalidArgument):
    code = ErrorCode.IMAGE_TOO_LARGE


class PayloadTooLarge(InvalidArgument):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class ModelNotFound(ServiceError):
    code = ErrorCode.MODEL_NOT_FOUND


class NoVariantFits(ServiceError):
    code = ErrorCode.NO_VARIANT_FITS


class FeaturesUnavailable(ServiceError):
    """Embeddings asked of a model whose stored graph has no features output."""

    code = ErrorCode.FEATURES_UNAVAILABLE


class Overloaded(ServiceError):
    code = ErrorCode.OVERLOADED

    def __init__(self, message: str, retry_after_s: float = 1.0, **details: Any):
        super().__init__(message, retry_after_s=retry_after_s, **details)
        self.retry_after_s = retry_after_s


class NotReady(ServiceError):
    code = ErrorCode.NOT_READY


class DeviceUnavailable(NotReady):
    """The configuration asks for a GPU (`device: cuda`, `decode: gpu`) that is not usable."""
    code = ErrorCode.DEVICE_UNAVAILABLE


class DeadlineExceeded(ServiceError):
    code = ErrorCode.DEADLINE_EXCEEDED


class Unauthenticated(ServiceError):
    code = ErrorCode.UNAUTHENTICATED


class RequestTimeout(ServiceError):
    """The client did not send its request body in time (`body_timeout_s`)."""

    code = ErrorCode.REQUEST_TIMEOUT


class Status(NamedTuple):
    http: int
    grpc: str  # a grpc.StatusCode member's name


# The one table: every adapter's status for every domain error (a subclass not listed takes
# its nearest listed base's).
STATUS: dict[type[ServiceError], Status] = {
    InvalidArgument: Status(400, "INVALID_ARGUMENT"),
    InvalidImage: Status(400, "INVALID_ARGUMENT"),
    ImageTooLarge: Status(413, "INVALID_ARGUMENT"),
    PayloadTooLarge: Status(413, "RESOURCE_EXHAUSTED"),
    Unauthenticated: Status(401, "UNAUTHENTICATED"),
    ModelNotFound: Status(404, "NOT_FOUND"),
    NoVariantFits: Status(422, "FAILED_PRECONDITION"),
    FeaturesUnavailable: Status(409, "FAILED_PRECONDITION"),
    Overloaded: Status(503, "RESOURCE_EXHAUSTED"),
    NotReady: Status(503, "UNAVAILABLE"),
    DeadlineExceeded: Status(504, "DEADLINE_EXCEEDED"),
    RequestTimeout: Status(408, "DEADLINE_EXCEEDED"),
    ServiceError: Status(500, "INTERNAL"),
}


def status_of(error: ServiceError) -> Status:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return STATUS[ServiceError]


def http_status(error: ServiceError) -> int:
    return status_of(error).http


def grpc_status_name(error: ServiceError) -> str:
    return status_of(error).grpc


def retry_after_header(error: ServiceError) -> str | None:
    """The Retry-After value (whole seconds, at least 1) an error asks clients to wait, if
    any: the same header over HTTP and trailing-metadata entry over gRPC."""
    if isinstance(error, Overloaded):
        return str(max(1, round(error.retry_after_s)))
    return None
