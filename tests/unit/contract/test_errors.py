"""The error contract between the server and the SDK: every code the server sends, over REST
(the HTTP status of its table, the code in the body) and over gRPC (the gRPC status of the same
table, the code in the trailing metadata), makes the SDK raise one and the same class."""

from __future__ import annotations

import pytest

from clients.errors import from_grpc, from_http
from contract.errors import ErrorCode
from service.core import errors as server_errors

SERVER_ERRORS = {cls.code: cls for cls in vars(server_errors).values()
                 if isinstance(cls, type) and issubclass(cls, server_errors.ServiceError)}
# Refusals of the HTTP protocol layer (service.http_guard), before any route: REST only.
HTTP_LAYER = {ErrorCode.HEADER_TOO_LARGE: 431, ErrorCode.TOO_MANY_CONNECTIONS: 503}


def test_every_code_is_a_server_error_class_or_an_http_layer_refusal():
    assert set(ErrorCode) == set(SERVER_ERRORS) | set(HTTP_LAYER)


@pytest.mark.parametrize("code", [code for code in ErrorCode if code not in HTTP_LAYER])
def test_one_error_code_is_one_class_over_either_transport(code):
    status = server_errors.status_of(SERVER_ERRORS[code]("m"))
    over_rest = from_http(status.http, "m", code, 2.0)
    over_grpc = from_grpc(status.grpc, "m", 2.0, code)
    assert type(over_rest) is type(over_grpc)
    assert over_rest.code == over_grpc.code == code
    assert over_rest.retryable == over_grpc.retryable


@pytest.mark.parametrize("code, status", HTTP_LAYER.items())
def test_http_layer_refusals_have_a_class_too(code, status):
    error = from_http(status, "m", code)
    assert error.code == code and error.retryable == (status == 503)
