"""Domain errors of the serving core, and the two tables that map them onto protocols.

Every error a client can cause is one of these, with a stable `code` and a message that says
what is wrong. The REST adapter uses `HTTP_STATUS`, the gRPC adapter `GRPC_STATUS` (names of
`grpc.StatusCode` members, so that the core does not import grpc).
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    code = "internal"

    def __init__(self, message: str, **details: Any):
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


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
