"""REST adapter: HTTP requests in, inference core calls, JSON out.

Each endpoint converts its request (multipart file fields, base64 in JSON, or a raw image
body), calls the core, and maps domain errors through the core's one status table. It is a
Starlette app mounted into the BentoML service (BentoML keeps /livez, /readyz, /metrics):
plain routes give GET endpoints, path parameters and full control of error bodies.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.core.arguments import finite_number, parse_json_object
from service.core.errors import (
    InvalidArgument,
    Overloaded,
    PayloadTooLarge,
    ServiceError,
    http_status,
)
from service.core.inference import InferenceCore
from service.frontier_plot import check_format, render_frontier
from service.openapi import openapi_document

log = logging.getLogger("convzoo.rest")

IMAGE_FIELDS = ("image", "images")
# Larger JSON bodies are parsed on a worker thread: the parser's number checks are Python
# calls, where the event loop can take the GIL back (a big OIP tensor as JSON takes 100 ms+).
JSON_THREAD_BYTES = 1 << 20


class ParsedRequest:
    """Images and options of a request, whatever its encoding."""

    def __init__(self, images: list[bytes], options: dict[str, Any]):
        self.images = images
        self.options = options

    def get(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    def get_list(self, key: str) -> list[str] | None:
        """A list option: a JSON list, repeated form fields, or one comma-separated value."""
        value = self.options.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise InvalidArgument(f"{key} must be a list, got {type(value).__name__}")
        return value


def _b64(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidArgument(f"{field}: expected a base64 string, got {type(value).__name__}")
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]  # data URLs
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{field}: not valid base64") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it passes `limit` bytes: a declared length is
    checked before reading, and a chunked upload (no Content-Length) is counted as it streams,
    so that an endless body is never held in memory."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # nobody to answer; not a server error either
        raise InvalidArgument("the client closed the connection before the end of its "
                              "body") from None
    # Starlette's body() and form() read from `_body` once it is set: they see what we read.
    request._body = b"".join(chunks)
    return request._body


async def json_object(body: bytes, what: str) -> dict[str, Any]:
    """`body` parsed as a JSON object by the shared argument parser, or a 400 naming `what`."""
    if len(body) < JSON_THREAD_BYTES:
        return parse_json_object(body, what)
    return await asyncio.to_thread(parse_json_object, body, what)


async def parse_request(request: Request, core: InferenceCore) -> ParsedRequest:
    limit = core.config.body_limit_bytes
    body = await read_body(request, limit)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    options: dict[str, Any] = dict(request.query_params)
    images: list[bytes] = []
    if content_type == "multipart/form-data":
        try:  # parses the body read above
            form = await request.form(max_files=core.config.max_images_per_request + 1,
                                      max_fields=100)
        except Exception as exc:
            raise InvalidArgument(f"malformed multipart body: {exc}") from None
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key not in IMAGE_FIELDS:
                    raise InvalidArgument(f"unexpected file field {key!r}; send images as "
                                          "'image' (or several 'images')")
                images.append(await value.read())
            elif key in options and key in ("models", "weights"):
                options[key] = f"{options[key]},{value}"
            else:
                options[key] = value
    elif content_type in ("application/json", ""):
        if not body:
            raise InvalidArgument("empty request body: send an image as a multipart 'image' "
                                  "field, base64 in JSON, or the raw image bytes")
        payload = await json_object(body, "body")
        for key, value in payload.items():
            if key == "image":
                images.append(_b64(value, "image"))
            elif key == "images":
                if not isinstance(value, list):
                    raise InvalidArgument("images must be a list of base64 strings")
                images.extend(_b64(v, f"images[{i}]") for i, v in enumerate(value))
            else:
                options[key] = value
    elif content_type.startswith("image/") or content_type == "application/octet-stream":
        images.append(body)
    else:
        raise InvalidArgument(f"unsupported content type {content_type!r}; use "
                              "multipart/form-data, application/json or image/*")
    return ParsedRequest(images, options)


def error_response(error: ServiceError) -> JSONResponse:
    headers = {}
    if isinstance(error, Overloaded):
        headers["Retry-After"] = str(max(1, round(error.retry_after_s)))
    return JSONResponse(error.to_dict(), status_code=http_status(error), headers=headers)


def endpoint(name: str, handler):
    """Wrap a handler(request, core, parsed) with parsing, metrics and error mapping."""

    async def route(request: Request) -> JSONResponse:
        core: InferenceCore = request.app.state.core
        model = None
        try:
            parsed = await parse_request(request, core)
            model = parsed.get("model")
            if model is not None and not isinstance(model, str):
                raise InvalidArgument("model must be a string")
            async with core.observe(name, model):
                body = await handler(core, parsed)
            return JSONResponse(body)
        except ServiceError as error:
            return error_response(error)
        except Exception:
            log.exception("unexpected error in %s (model=%s)", name, model)
            return JSONResponse({"error": {"code": "internal",
                                           "message": "internal error; see the server log"}},
                                status_code=500)

    return route


def _deadline(parsed: ParsedRequest) -> float | None:
    """A client-given timeout (seconds) becomes a deadline for queued work."""
    timeout = parsed.get("timeout_s")
    if timeout is None:
        return None
    seconds = finite_number(timeout, "timeout_s")
    if seconds <= 0:
        raise InvalidArgument("timeout_s must be positive")
    return time.monotonic() + seconds


async def classify(core: InferenceCore, parsed: ParsedRequest) -> dict[str, Any]:
    if len(parsed.images) != 1:
        raise InvalidArgument(f"/classify takes exactly one image, got {len(parsed.images)}; "
                              "use /classify_batch for several")
    results = await core.classify(parsed.get("model"), parsed.images,
                                  parsed.get("top_k", 5), _deadline(parsed))
    return results[0]


async def classify_batch(core: InferenceCore, parsed: ParsedRequest) -> dict[str, Any]:
    results = await core.classify(parsed.get("model"), parsed.images,
                                  parsed.get("top_k", 5), _deadline(parsed))
    return {"model": results[0]["model"], "weights": results[0]["weights"],
            "results": results}


def _one_image(parsed: ParsedRequest, path: str) -> bytes:
    if len(parsed.images) != 1:
        raise InvalidArgument(f"{path} takes exactly one image, got {len(parsed.images)}")
    return parsed.images[0]


async def multicrop(core: InferenceCore, parsed: ParsedRequest) -> dict[str, Any]:
    return await core.multicrop(parsed.get("model"), _one_image(parsed, "/multicrop"),
                                parsed.get("crops", 10), parsed.get("top_k", 5),
                                _deadline(parsed))


async def ensemble(core: InferenceCore, parsed: ParsedRequest) -> dict[str, Any]:
    return await core.ensemble(
        _one_image(parsed, "/ensemble"), models=parsed.get_list("models"),
        ensemble=parsed.get("ensemble"), weights=parsed.get_list("weights"),
        method=parsed.get("method"), k=parsed.get("top_k", 5), crops=parsed.get("crops", 1),
        deadline=_deadline(parsed))


async def select(core: InferenceCore, parsed: ParsedRequest) -> dict[str, Any]:
    return await core.select(
        _one_image(parsed, "/select"), parsed.get("family"),
        latency_budget_ms=parsed.get("latency_budget_ms"), min_top1=parsed.get("min_top1"),
        k=parsed.get("top_k", 5), allow_untrained=parsed.get("allow_untrained", False),
        deadline=_deadline(parsed))


async def family_frontier(request: Request) -> Response:
    """GET /frontier?family=NAME[&format=json|png|svg][&allow_untrained=true]."""
    core: InferenceCore = request.app.state.core
    params = request.query_params
    try:
        fmt = check_format(params.get("format", "json"))
        data = await core.frontier(params.get("family"), params.get("allow_untrained"))
        if fmt == "json":
            return JSONResponse(data)
        content, media_type = await asyncio.to_thread(render_frontier, data, fmt)
        return Response(content, media_type=media_type)
    except ServiceError as error:
        return error_response(error)


async def list_models(request: Request) -> JSONResponse:
    core: InferenceCore = request.app.state.core
    return JSONResponse({"default_model": core.config.default_model, "models": core.models()})


async def get_model(request: Request) -> JSONResponse:
    core: InferenceCore = request.app.state.core
    try:
        return JSONResponse(core.model_info(request.path_params["name"]))
    except ServiceError as error:
        return error_response(error)


def create_app(extra_routes: list[Route] | None = None) -> Starlette:
    routes = [
        Route("/classify", endpoint("classify", classify), methods=["POST"]),
        Route("/classify_batch", endpoint("classify_batch", classify_batch), methods=["POST"]),
        Route("/multicrop", endpoint("multicrop", multicrop), methods=["POST"]),
        Route("/ensemble", endpoint("ensemble", ensemble), methods=["POST"]),
        Route("/select", endpoint("select", select), methods=["POST"]),
        Route("/frontier", family_frontier, methods=["GET"]),
        Route("/models", list_models, methods=["GET", "POST"]),
        Route("/models/{name}", get_model, methods=["GET"]),
        Route("/openapi.json", openapi_document, methods=["GET"]),
        *(extra_routes or []),
    ]
    return Starlette(routes=routes)
