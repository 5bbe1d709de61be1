"""The SDK's errors: one class per kind of failure, whichever transport reported it.

Every error the server returns, and every transport failure, is raised as a `ConvZooError`
subclass carrying the HTTP status (REST) or the gRPC status code name (gRPC), the server's
error code and its message. The class follows the server's error code (`contract.errors`,
in REST's body and in gRPC's trailing metadata), so one error raises one class over either
transport; the status decides only where no code came (a proxy's answer, gRPC's own limits).
`retryable` marks the ones worth retrying after a pause: the server is unavailable (503,
UNAVAILABLE, a refused connection) or overloaded.
"""

from __future__ import annotations

from contract.errors import ErrorCode


class ConvZooError(Exception):
    retryable = False

    def __init__(self, message: str, *, status: int | None = None,
                 grpc_code: str | None = None, code: str | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status  # HTTP status, REST only
        self.grpc_code = grpc_code  # grpc.StatusCode name, gRPC only
        self.code = code  # the server's error code, e.g. "invalid_image"
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        where = self.grpc_code or (f"HTTP {self.status}" if self.status else None)
        return f"[{where}] {self.message}" if where else self.message


class InvalidArgumentError(ConvZooError):
    """The request is wrong: not an image, bad top_k, wrong tensor shape..."""


class PayloadTooLargeError(InvalidArgumentError):
    """The request is over the server's size limit."""


class AuthenticationError(ConvZooError):
    """The API key is missing or wrong."""


class ModelNotFoundError(ConvZooError):
    """No such model (or the model has no weights in the server's store)."""


class NoVariantFitsError(ConvZooError):
    """Selection: no variant of the family meets the latency budget / accuracy floor."""


class FeaturesUnavailableError(ConvZooError):
    """Embeddings asked of a model stored without its features output: re-import it."""


class UnavailableError(ConvZooError):
    """The server cannot serve now (starting, model not loaded, unreachable): retry later."""

    retryable = True


class OverloadedError(UnavailableError):
    """The model's queue is full: retry after `retry_after_s`."""


class DeadlineExceededError(ConvZooError):
    """The call's timeout passed before an answer came."""


class ServerError(ConvZooError):
    """The server failed unexpectedly; its log says why."""


HTTP_ERRORS: dict[int, type[ConvZooError]] = {
    400: InvalidArgumentError, 401: AuthenticationError, 403: AuthenticationError,
    404: ModelNotFoundError, 413: PayloadTooLargeError, 422: NoVariantFitsError,
    503: UnavailableError, 504: DeadlineExceededError,
}

GRPC_ERRORS: dict[str, type[ConvZooError]] = {
    "INVALID_ARGUMENT": InvalidArgumentError, "UNAUTHENTICATED": AuthenticationError,
    "PERMISSION_DENIED": AuthenticationError, "NOT_FOUND": ModelNotFoundError,
    "FAILED_PRECONDITION": NoVariantFitsError, "UNAVAILABLE": UnavailableError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
}


# The server's error codes, whatever the transport.
CODE_ERRORS: dict[str, type[ConvZooError]] = {
    ErrorCode.INVALID_ARGUMENT: InvalidArgumentError,
    ErrorCode.INVALID_IMAGE: InvalidArgumentError,
    ErrorCode.IMAGE_TOO_LARGE: PayloadTooLargeError,
    ErrorCode.PAYLOAD_TOO_LARGE: PayloadTooLargeError,
    ErrorCode.HEADER_TOO_LARGE: PayloadTooLargeError,
    ErrorCode.MODEL_NOT_FOUND: ModelNotFoundError,
    ErrorCode.NO_VARIANT_FITS: NoVariantFitsError,
    ErrorCode.FEATURES_UNAVAILABLE: FeaturesUnavailableError,
    ErrorCode.OVERLOADED: OverloadedError,
    ErrorCode.NOT_READY: UnavailableError,
    ErrorCode.DEVICE_UNAVAILABLE: UnavailableError,
    ErrorCode.TOO_MANY_CONNECTIONS: UnavailableError,
    ErrorCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    # The request's body did not arrive in time (REST only).
    ErrorCode.REQUEST_TIMEOUT: DeadlineExceededError,
    ErrorCode.UNAUTHENTICATED: AuthenticationError,
    ErrorCode.INTERNAL: ServerError,
}


def from_http(status: int, message: str, code: str | None = None,
              retry_after_s: float | None = None) -> ConvZooError:
    cls = CODE_ERRORS.get(code) if code else None
    if cls is None:
        cls = HTTP_ERRORS.get(status, ServerError if status >= 500 else ConvZooError)
    return cls(message, status=status, code=code, retry_after_s=retry_after_s)


def from_grpc(code_name: str, message: str, retry_after_s: float | None = None,
              code: str | None = None) -> ConvZooError:
    cls = CODE_ERRORS.get(code) if code else None
    if cls is None and code_name == "RESOURCE_EXHAUSTED":
        # The server marks a full queue with retry-after; otherwise the message was too big
        # for gRPC itself, which sends no code.
        cls = OverloadedError if retry_after_s is not None else PayloadTooLargeError
    if cls is None:
        cls = GRPC_ERRORS.get(code_name, ServerError)
    return cls(message, grpc_code=code_name, code=code, retry_after_s=retry_after_s)
