"""The error codes every ConvZoo answer carries, and the metadata keys that carry them.

A REST error body is `{"error": {"code": CODE, "message": ...}}` (OIP REST: `{"error":
message, "code": CODE}`), with the HTTP status of the server's one table and, for
`overloaded`, a `Retry-After` header. A gRPC error ends the call with the table's status code
and the same code and Retry-After in its trailing metadata (`ERROR_CODE_KEY`,
`RETRY_AFTER_KEY`), so the SDK raises the same exception for the same error whichever
transport carried it. `TIMEOUT_HEADER` is the OIP REST request header that sets a deadline,
as `timeout_s` does.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_ARGUMENT = "invalid_argument"
    INVALID_IMAGE = "invalid_image"
    IMAGE_TOO_LARGE = "image_too_large"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    MODEL_NOT_FOUND = "model_not_found"
    NO_VARIANT_FITS = "no_variant_fits"
    # The model's stored graph has no `features` output (stored before it existed).
    FEATURES_UNAVAILABLE = "features_unavailable"
    OVERLOADED = "overloaded"
    NOT_READY = "not_ready"
    DEVICE_UNAVAILABLE = "device_unavailable"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    UNAUTHENTICATED = "unauthenticated"
    REQUEST_TIMEOUT = "request_timeout"
    INTERNAL = "internal"
    # Refusals of the HTTP protocol layer (service.http_guard), before any route runs.
    HEADER_TOO_LARGE = "header_too_large"
    TOO_MANY_CONNECTIONS = "too_many_connections"


ERROR_CODE_KEY = "convzoo-error-code"
RETRY_AFTER_KEY = "retry-after"
TIMEOUT_HEADER = "convzoo-timeout-s"
