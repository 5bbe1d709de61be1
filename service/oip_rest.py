"""Open Inference Protocol REST routes (`/v2/...`) on the HTTP port, for OIP HTTP clients.

The same data plane as the gRPC servicer through the same converters (`service.oip_codec`).
Tensors are JSON (BYTES as strings; IMAGE elements as base64 strings, since image files are
not text) or, with Triton's binary tensor data extension that tritonclient's HTTP client uses,
raw bytes after the JSON header, whose length the `Inference-Header-Content-Length` header
gives. A deadline comes from the `timeout_s` parameter or the `convzoo-timeout-s` header
(`service.http_common`). Errors are the OIP error object `{"error": message}` (plus our
`code`), with the HTTP status of the core's one table. As the specification says, readiness
is the status code: 200 when ready, 400 when not. `OIP_ROUTES` describes every route, for the
OpenAPI document too (`service.openapi`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service import oip_codec as codec
from service.core.dataplane import DataPlane
from service.core.errors import InvalidArgument, ServiceError
from service.http_common import (
    internal_error_response,
    json_object,
    oip_error_response,
    read_body,
    timeout_header,
)

log = logging.getLogger("convzoo.oip_rest")

HEADER_LENGTH = "inference-header-content-length"
ENDPOINT = "oip_rest_infer"  # the metric label of inference requests

Handler = Callable[[Request, DataPlane], Awaitable[Response]]


def handler(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        try:
            return await fn(request, request.app.state.plane)
        except ServiceError as error:
            return oip_error_response(error)
        except Exception:
            log.exception("unexpected error in %s", request.url.path)
            return internal_error_response(oip=True)

    return route


def _ready(name: str, ready: bool) -> JSONResponse:
    return JSONResponse({"name": name, "ready": ready}, status_code=200 if ready else 400)


async def server_metadata(request: Request, plane: DataPlane) -> Response:
    return JSONResponse(codec.server_metadata())


async def live(request: Request, plane: DataPlane) -> Response:
    return JSONResponse({"live": True})


async def ready(request: Request, plane: DataPlane) -> Response:
    return JSONResponse({"ready": plane.ready}, status_code=200 if plane.ready else 400)


async def model_metadata(request: Request, plane: DataPlane) -> Response:
    params = request.path_params
    signature = plane.signature(params["name"])
    codec.check_version(params["name"], params.get("version"))
    return JSONResponse(codec.model_metadata(signature))


async def model_ready(request: Request, plane: DataPlane) -> Response:
    params = request.path_params
    loaded = plane.model_ready(params["name"])
    codec.check_version(params["name"], params.get("version"))
    return _ready(params["name"], loaded)


async def repository_index(request: Request, plane: DataPlane) -> Response:
    body = await read_body(request, plane.config.body_limit_bytes)
    options = await json_object(body, "repository index request") if body.strip() else {}
    entries = plane.repository_index(bool(options.get("ready", False)))
    return JSONResponse(codec.repository_index(entries))


async def _json_and_binary(request: Request, plane: DataPlane) -> tuple[dict[str, Any], bytes]:
    body = await read_body(request, plane.config.body_limit_bytes)
    header_length = request.headers.get(HEADER_LENGTH)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise InvalidArgument(f"{HEADER_LENGTH} {header_length!r} does not fit a body of "
                                  f"{len(body)} bytes")
        body, binary = body[:int(header_length)], body[int(header_length):]
    else:
        binary = b""
    return await json_object(body, "inference request"), binary


async def infer(request: Request, plane: DataPlane) -> Response:
    params = request.path_params
    async with plane.observe(ENDPOINT, params["name"]) as observation:
        payload, binary = await _json_and_binary(request, plane)
        outputs, binary_outputs = codec.requested_outputs_from_json(payload)
        call = codec.infer_call(plane.spec, params["name"], params.get("version"),
                                codec.inputs_from_json(payload, binary),
                                codec.parameters_from_json(payload), outputs,
                                timeout_header(request))
        observation.label = call.requested
        results = await plane.answer(call.request)
        observation.ran(results)
        body, binary_out = codec.infer_response_to_json(
            results[0].model, payload.get("id"), codec.output_tensors(results, call.outputs),
            codec.response_parameters(results), binary_outputs)
    header = json.dumps(body, separators=(",", ":")).encode()
    if not binary_out:
        return Response(header, media_type="application/json")
    return Response(header + binary_out, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header))})


@dataclass(frozen=True)
class OipRoute:
    method: str
    path: str
    summary: str
    handler: Handler
    result_schema: str  # the OpenAPI schema of a 200's body (service.openapi)
    body: str | None = None  # "json" (an optional JSON object) or "infer"
    errors: tuple[int, ...] = ()


MODEL_PREFIXES = ("/v2/models/{name}", "/v2/models/{name}/versions/{version}")
_INFER_ERRORS = (400, 404, 408, 409, 413, 503, 504)

OIP_ROUTES: tuple[OipRoute, ...] = (
    OipRoute("get", "/v2", "OIP server metadata", server_metadata, "ServerMetadata"),
    OipRoute("get", "/v2/health/live", "OIP liveness", live, "Live"),
    OipRoute("get", "/v2/health/ready", "OIP readiness (400 when not ready)", ready, "Ready",
             errors=(400,)),
    OipRoute("post", "/v2/repository/index", "OIP model repository index", repository_index,
             "RepositoryIndex", body="json", errors=(400, 408, 413, 503)),
    *(route for prefix in MODEL_PREFIXES for route in (
        OipRoute("get", prefix, "OIP model metadata", model_metadata, "ModelMetadata",
                 errors=(404,)),
        OipRoute("get", f"{prefix}/ready", "OIP model readiness (400 when not ready)",
                 model_ready, "ModelReady", errors=(400, 404)),
        OipRoute("post", f"{prefix}/infer", "OIP inference", infer, "InferResponse",
                 body="infer", errors=_INFER_ERRORS))),
)


def oip_routes() -> list[Route]:
    return [Route(route.path, handler(route.handler), methods=[route.method.upper()])
            for route in OIP_ROUTES]
