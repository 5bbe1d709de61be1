"""The OpenAPI document describes exactly the REST routes the service mounts."""

from __future__ import annotations

import json

import pytest

from service.oip_rest import oip_routes
from service.openapi import openapi_schema
from service.rest import create_app


def test_every_route_is_described_and_nothing_else():
    routes = {(method.lower(), route.path) for route in create_app(oip_routes()).routes
              for method in route.methods - {"HEAD"}}
    described = {(method, path) for path, item in openapi_schema()["paths"].items()
                 for method in item}
    assert described == routes


@pytest.mark.parametrize("auth", [False, True])
def test_the_document_is_json_with_resolvable_references(auth):
    document = json.loads(json.dumps(openapi_schema(auth)))
    text = json.dumps(document)
    refs = {part.split('"')[0] for part in text.split('"#/components/schemas/')[1:]}
    assert refs <= set(document["components"]["schemas"])
    statuses = {status for item in document["paths"].values() for op in item.values()
                for status in op["responses"]}
    assert ("401" in statuses) == auth and "500" not in statuses
