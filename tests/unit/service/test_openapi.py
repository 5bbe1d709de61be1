"""The OpenAPI document describes exactly the HTTP routes the service mounts, with the options
the routes' own request models take."""

from __future__ import annotations

import json

import pytest

from service.http_app import create_app
from service.openapi import openapi_schema
from service.rest import IMAGE_ROUTES


def test_every_route_is_described_and_nothing_else():
    routes = {(method.lower(), route.path) for route in create_app().routes
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


def test_each_image_routes_options_are_its_request_models_fields():
    document = openapi_schema()
    for route in IMAGE_ROUTES:
        operation = document["paths"][route.path]["post"]
        query = {p["name"] for p in operation["parameters"]}
        body = operation["requestBody"]["content"]["application/json"]["schema"]["properties"]
        assert query == set(route.options.model_fields)
        assert set(body) == query | {"images" if route.several_images else "image"}
    top_k = document["paths"]["/classify"]["post"]["parameters"][1]["schema"]
    assert top_k == {"type": "integer", "minimum": 1, "default": 5,
                     "description": "classes returned per image (default 5)"}
