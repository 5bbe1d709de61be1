"""The OpenAPI 3 description of the HTTP API, served at `GET /openapi.json`.

It is generated from the routes themselves: REST's image routes (`service.rest.IMAGE_ROUTES`)
with the pydantic models of their options (`service.rest_requests`: each option's schema and
description, taken in the query, as multipart form fields or as JSON keys), the frontier's
query model, and the OIP REST routes (`service.oip_rest.OIP_ROUTES`); the response bodies are
the schemas of `SCHEMAS`. An option added to a model, or a route added to a table, is in the
document with nothing else to edit. A unit test checks that every Starlette route is
described and nothing else is; the REST fuzz test (schemathesis) generates its requests from
this document.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.frontier_plot import PLOT_FORMATS
from service.oip_rest import OIP_ROUTES
from service.rest import IMAGE_ROUTES
from service.rest_requests import FrontierQuery

OPENAPI_VERSION = "3.0.3"

_STRING = {"type": "string"}
_NUMBER = {"type": "number"}
_FLAG = {"type": "boolean"}
# Model names and versions: what a path segment can carry unescaped.
_PATH_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"}


def option_schemas(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Each option of a request model: its schema and description, as the model declares."""
    properties = model.model_json_schema()["properties"]
    return {name: {key: value for key, value in schema.items()
                   if key != "title" and not (key == "default" and value is None)}
            for name, schema in properties.items()}


def _object(required: tuple[str, ...] = (), **properties: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_PREDICTION = _object(("index", "label", "score"), index={"type": "integer"}, label=_STRING,
                      score=_NUMBER)
_TIMING = {"type": "object", "additionalProperties": _NUMBER}
_TENSOR = _object(("name", "datatype", "shape"), name=_STRING, datatype=_STRING,
                  shape={"type": "array", "items": {"type": "integer"}},
                  data={"type": "array", "items": {}}, parameters={"type": "object"})

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _object(("error",), error=_object(("code", "message"), code=_STRING,
                                               message=_STRING)),
    "OipError": _object(("error",), error=_STRING, code=_STRING),
    "Classification": _object(("model", "weights", "predictions", "timing_ms"), model=_STRING,
                              weights=_STRING, warning=_STRING, timing_ms=_TIMING,
                              predictions={"type": "array", "items": _PREDICTION},
                              crops={"type": "integer"}, selection={"type": "object"}),
    "Batch": _object(("model", "weights", "results"), model=_STRING, weights=_STRING,
                     results={"type": "array", "items": _ref("Classification")}),
    "Ensemble": _object(("model", "models", "method", "predictions", "members"),
                        model=_STRING, ensemble={"type": "string", "nullable": True},
                        models={"type": "array", "items": _STRING}, method=_STRING,
                        predictions={"type": "array", "items": _PREDICTION},
                        members={"type": "array", "items": _ref("Classification")}),
    "Embedding": _object(("model", "weights", "dim", "normalized", "embeddings", "timing_ms"),
                         model=_STRING, weights=_STRING, warning=_STRING,
                         dim={"type": "integer"}, normalized=_FLAG, timing_ms=_TIMING,
                         embeddings={"type": "array",
                                     "items": {"type": "array", "items": _NUMBER}}),
    "Frontier": {"type": "object"},
    "ModelInfo": _object(("name", "family", "weights", "loaded"), name=_STRING,
                         family=_STRING, weights=_STRING, loaded=_FLAG),
    "Models": _object(("default_model", "models"), default_model=_STRING,
                      models={"type": "array", "items": _ref("ModelInfo")}),
    "OpenAPI": _object(("openapi", "paths"), openapi=_STRING, paths={"type": "object"}),
    "ServerMetadata": _object(("name", "version", "extensions"), name=_STRING,
                              version=_STRING, extensions={"type": "array", "items": _STRING}),
    "Live": _object(("live",), live=_FLAG),
    "Ready": _object(("ready",), ready=_FLAG),
    "ModelReady": _object(("name", "ready"), name=_STRING, ready=_FLAG),
    "ModelMetadata": _object(("name", "versions", "platform", "inputs", "outputs"),
                             name=_STRING, platform=_STRING,
                             versions={"type": "array", "items": _STRING},
                             inputs={"type": "array", "items": _TENSOR},
                             outputs={"type": "array", "items": _TENSOR}),
    "RepositoryIndex": {"type": "array", "items": _object(
        ("name", "version", "state"), name=_STRING, version=_STRING, state=_STRING,
        reason=_STRING)},
    "InferRequest": _object(
        ("inputs",), id=_STRING, parameters={"type": "object"},
        inputs={"type": "array", "items": _TENSOR},
        outputs={"type": "array", "items": _object(("name",), name=_STRING,
                                                   parameters={"type": "object"})}),
    "InferResponse": _object(("model_name", "outputs"), model_name=_STRING,
                             model_version=_STRING, id=_STRING, parameters={"type": "object"},
                             outputs={"type": "array", "items": _TENSOR}),
}

STATUS_TEXT = {200: "OK", 400: "Invalid request (or, for OIP readiness, not ready)",
               401: "Missing or invalid API key (when keys are configured)",
               404: "No such model, or no weights for it",
               408: "Request body not received within body_timeout_s",
               409: "The model's stored graph has no features output: re-import it",
               413: "Body or image too large", 422: "No variant fits the budget",
               503: "Overloaded, or request bodies in flight at their bound (see "
               "Retry-After), or model not ready", 504: "Deadline passed while queued"}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    ok: str  # schema name of the 200 response
    body: str | None = None  # "images", "image", "json" or "infer"
    options: dict[str, dict[str, Any]] | None = None  # name: schema (query and body)
    errors: tuple[int, ...] = (400,)
    oip: bool = False  # OIP error bodies


_IMAGE_ERRORS = (400, 404, 408, 413, 503, 504)


def operations() -> tuple[Operation, ...]:
    """Every route of the HTTP API, from the routes' own tables."""
    return (
        *(Operation("post", route.path, route.summary, route.result_schema,
                    "images" if route.several_images else "image",
                    option_schemas(route.options), (*_IMAGE_ERRORS, *route.errors))
          for route in IMAGE_ROUTES),
        Operation("get", "/frontier", "A family's accuracy/latency frontier", "Frontier",
                  options=option_schemas(FrontierQuery), errors=(400, 404, 503)),
        Operation("get", "/models", "Every registry model and its state", "Models", errors=()),
        Operation("post", "/models", "Every registry model and its state", "Models",
                  errors=()),
        Operation("get", "/models/{name}", "One model's description", "ModelInfo",
                  errors=(404,)),
        Operation("get", "/openapi.json", "This document", "OpenAPI", errors=()),
        *(Operation(route.method, route.path, route.summary, route.result_schema, route.body,
                    errors=route.errors, oip=True) for route in OIP_ROUTES),
    )


def _request_body(operation: Operation) -> dict[str, Any] | None:
    if operation.body is None:
        return None
    if operation.body == "infer":
        return {"required": True, "content": {"application/json": {
            "schema": _ref("InferRequest")}}}
    if operation.body == "json":
        return {"required": False, "content": {"application/json": {
            "schema": _object(ready=_FLAG)}}}
    options = operation.options or {}
    binary = {"type": "string", "format": "binary"}
    base64 = {"type": "string", "format": "byte", "description": "base64 (or a data URL)"}
    field = operation.body  # "image" (exactly one) or "images" (one or more)
    form = {field: binary if field == "image" else {"type": "array", "items": binary}}
    json = {field: base64 if field == "image" else {"type": "array", "items": base64}}
    return {"required": True, "content": {
        "multipart/form-data": {"schema": _object((field,), **form, **options)},
        "application/json": {"schema": _object((field,), **json, **options)},
        "image/jpeg": {"schema": binary},
        "image/png": {"schema": binary},
        "application/octet-stream": {"schema": binary},
    }}


def _responses(operation: Operation, auth: bool) -> dict[str, Any]:
    error = _ref("OipError" if operation.oip else "Error")
    ok_media = {"application/json": {"schema": _ref(operation.ok)}}
    if operation.path.endswith("/infer"):  # Triton's binary data extension
        ok_media["application/octet-stream"] = {"schema": {"type": "string",
                                                           "format": "binary"}}
    if operation.path == "/frontier":
        ok_media.update({media: {"schema": {"type": "string", "format": "binary"}}
                         for media in PLOT_FORMATS.values()})
    responses: dict[str, Any] = {"200": {"description": STATUS_TEXT[200], "content": ok_media}}
    for status in sorted({*operation.errors, *((401,) if auth else ())}):
        schema = error
        if status == 400 and operation.path.endswith("ready"):  # not ready: still a body
            schema = {"anyOf": [_ref("Ready" if operation.path.startswith("/v2/health")
                                     else "ModelReady"), error]}
        responses[str(status)] = {"description": STATUS_TEXT[status],
                                  "content": {"application/json": {"schema": schema}}}
    return responses


def _operation(operation: Operation, auth: bool) -> dict[str, Any]:
    parameters = [{"name": name, "in": "path", "required": True, "schema": _PATH_NAME}
                  for name in re.findall(r"{(\w+)}", operation.path)]
    parameters += [{"name": name, "in": "query", "required": False, "schema": schema}
                   for name, schema in (operation.options or {}).items()]
    spec: dict[str, Any] = {
        "summary": operation.summary,
        "operationId": f"{operation.method}_{re.sub(r'[^a-z0-9]+', '_', operation.path)}"
                       .rstrip("_"),
        "responses": _responses(operation, auth),
    }
    if parameters:
        spec["parameters"] = parameters
    body = _request_body(operation)
    if body is not None:
        spec["requestBody"] = body
    return spec


@functools.cache
def openapi_schema(auth: bool = False) -> dict[str, Any]:
    """The document; with `auth`, the key schemes and 401s (the open paths are not routes of
    this API: BentoML serves /livez, /readyz and /metrics)."""
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations():
        paths.setdefault(operation.path, {})[operation.method] = _operation(operation, auth)
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "ConvZoo", "version": "1",
                 "description": "Image classification with classic CNNs (REST; gRPC speaks "
                                "the Open Inference Protocol on its own port)."},
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }
    if auth:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}
        document["security"] = [{"bearer": []}, {"apiKey": []}]
    return document


async def openapi_document(request: Request) -> JSONResponse:
    config = request.app.state.plane.config
    return JSONResponse(openapi_schema(auth=bool(config.api_keys or config.api_keys_file)))


def openapi_routes() -> list[Route]:
    return [Route("/openapi.json", openapi_document, methods=["GET"])]
