"""Open Inference Protocol REST routes (`/v2/...`) on the HTTP port, for OIP HTTP clients.

The same data plane as the gRPC servicer through the same converters (`service.oip_codec`)
and core. Tensors are JSON (BYTES as strings; IMAGE elements as base64 strings, since image
files are not text) or, with Triton's binary tensor data extension that tritonclient's HTTP
client uses, raw bytes after the JSON header, whose length the `Inference-Header-Content-Length`
header gives. Errors are the OIP error object `{"error": message}` (plus our `code`), with the
HTTP status of the core's one table. As the specification says, readiness is the status code:
200 when ready, 400 when not.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service import oip_codec as codec
from service.core.errors import InvalidArgument, ServiceError, client_message
from service.core.inference import InferenceCore
from service.rest import error_response, json_object, read_body

log = logging.getLogger("convzoo.oip_rest")

HEADER_LENGTH = "inference-header-content-length"


def oip_error(error: ServiceError) -> JSONResponse:
    """REST's error response (status from the one table, Retry-After), with OIP's body."""
    response = error_response(error)
    return JSONResponse({"error": client_message(error.message), "code": error.code},
                        status_code=response.status_code,
                        headers={k: v for k, v in response.headers.items() if k == "retry-after"})


def handler(fn: Callable[[Request, InferenceCore], Awaitable[Response]]
            ) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        try:
            return await fn(request, request.app.state.core)
        except ServiceError as error:
            return oip_error(error)
        except Exception:
            log.exception("unexpected error in %s", request.url.path)
            return JSONResponse({"error": "internal error; see the server log",
                                 "code": "internal"}, status_code=500)

    return route


def _ready(name: str, ready: bool) -> JSONResponse:
    return JSONResponse({"name": name, "ready": ready}, status_code=200 if ready else 400)


async def server_metadata(request: Request, core: InferenceCore) -> Response:
    return JSONResponse(codec.server_metadata())


async def live(request: Request, core: InferenceCore) -> Response:
    return JSONResponse({"live": True})


async def ready(request: Request, core: InferenceCore) -> Response:
    return JSONResponse({"ready": core.ready}, status_code=200 if core.ready else 400)


async def model_metadata(request: Request, core: InferenceCore) -> Response:
    params = request.path_params
    return JSONResponse(codec.model_metadata(core, params["name"], params.get("version")))


async def model_ready(request: Request, core: InferenceCore) -> Response:
    params = request.path_params
    return _ready(params["name"],
                  codec.model_ready(core, params["name"], params.get("version")))


async def repository_index(request: Request, core: InferenceCore) -> Response:
    body = await read_body(request, core.config.body_limit_bytes)
    options = await json_object(body, "repository index request") if body.strip() else {}
    return JSONResponse(codec.repository_index(core, bool(options.get("ready", False))))


async def _json_and_binary(request: Request, core: InferenceCore) -> tuple[dict[str, Any], bytes]:
    body = await read_body(request, core.config.body_limit_bytes)
    header_length = request.headers.get(HEADER_LENGTH)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise InvalidArgument(f"{HEADER_LENGTH} {header_length!r} does not fit a body of "
                                  f"{len(body)} bytes")
        body, binary = body[:int(header_length)], body[int(header_length):]
    else:
        binary = b""
    return await json_object(body, "inference request"), binary


async def infer(request: Request, core: InferenceCore) -> Response:
    params = request.path_params
    async with core.observe("oip_rest_infer", params["name"]):
        payload, binary = await _json_and_binary(request, core)
        outputs, binary_outputs = codec.requested_outputs_from_json(payload)
        call = codec.classify_call(core, params["name"], params.get("version"),
                                   codec.inputs_from_json(payload, binary),
                                   codec.parameters_from_json(payload), outputs)
        results = await codec.run(core, call, None)
        body, binary_out = codec.infer_response_to_json(
            call.model or results[0]["model"], payload.get("id"),
            codec.output_tensors(results, call.outputs),
            codec.response_parameters(results), binary_outputs)
    header = json.dumps(body, separators=(",", ":")).encode()
    if not binary_out:
        return Response(header, media_type="application/json")
    return Response(header + binary_out, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header))})


def oip_routes() -> list[Route]:
    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    routes = [
        Route("/v2", handler(server_metadata), methods=["GET"]),
        Route("/v2/health/live", handler(live), methods=["GET"]),
        Route("/v2/health/ready", handler(ready), methods=["GET"]),
        Route("/v2/repository/index", handler(repository_index), methods=["POST"]),
    ]
    for prefix in (model, versioned):
        routes += [
            Route(prefix, handler(model_metadata), methods=["GET"]),
            Route(f"{prefix}/ready", handler(model_ready), methods=["GET"]),
            Route(f"{prefix}/infer", handler(infer), methods=["POST"]),
        ]
    return routes
