"""Fuzzing the REST API of a live server from its own OpenAPI document (`GET /openapi.json`).

Schemathesis generates requests for every operation the document describes (schema-valid and
schema-violating ones: wrong types, missing fields, random bytes as images, unknown models)
and checks each answer: no server fault (no 5xx but the service's deliberate ones: 503
overloaded or not ready, 504 for a deadline, e.g. a generated `timeout_s` of 1 ms), only
statuses and media types the document declares, bodies that match the declared schemas.
Bounded: a fixed number of examples per operation.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.openapi import openapi_schema

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES_PER_OPERATION = 25
# 5xx answers the service gives on purpose, by error code; anything else is a fault.
DELIBERATE = {503: {"overloaded", "not_ready"}, 504: {"deadline_exceeded"}}


# The document as the service generates it (the first test checks that the server serves the
# same one), loaded at collection so that each operation is a test of its own; schemathesis'
# lazy `from_fixture` loader, which could read it from the server, fails under pytest 9.
schema = schemathesis.openapi.from_dict(openapi_schema())


def test_the_served_document_is_the_generated_one(http):
    served = http.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(json.dumps(openapi_schema()))


def no_server_fault(ctx, response, case) -> bool | None:
    if response.status_code < 500:
        return None
    try:
        body = response.json()
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else body.get("code")
    assert code in DELIBERATE.get(response.status_code, ()), (
        f"server fault {response.status_code}: {response.text[:300]}")
    return True


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error_or_an_undeclared_answer(case, server):
    case.call_and_validate(base_url=server.http_url, timeout=60, checks=[
        no_server_fault, status_code_conformance, content_type_conformance,
        response_schema_conformance])
