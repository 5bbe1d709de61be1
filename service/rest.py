"""The REST adapter: HTTP requests in, data-plane requests out, JSON back.

Each image route is one row of `IMAGE_ROUTES`: its path, its options model
(`service.rest_requests`), how many images it takes and which data-plane call answers it.
`rest_routes` makes the Starlette routes from the rows, and `service.openapi` makes the
OpenAPI document from the same rows, so neither can drift from the other. An image route
reads the body within its limits (`service.http_common`), takes the images from it (multipart
`image`/`images` files, base64 `image`/`images` in JSON, or a raw image body) and the options
from the query, the form fields or the JSON keys, and maps errors through the core's one
status table. The routes are mounted into the BentoML service, which keeps /livez, /readyz
and /metrics.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from service.core.dataplane import DataPlane
from service.core.errors import InvalidArgument, ServiceError
from service.core.results import embeddings_to_dict
from service.frontier_plot import render_frontier
from service.http_common import (
    error_response,
    internal_error_response,
    json_object,
    read_body,
    replayed,
)
from service.rest_requests import (
    ClassifyOptions,
    EmbedOptions,
    EnsembleOptions,
    FrontierQuery,
    MulticropOptions,
    Options,
    SelectOptions,
    parse_options,
)

log = logging.getLogger("convzoo.rest")

IMAGE_FIELDS = ("image", "images")
# Form fields that may repeat, joined as one comma-separated list.
LIST_FIELDS = ("models", "weights")


def _b64(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidArgument(f"{field}: expected a base64 string, got {type(value).__name__}")
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]  # data URLs
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{field}: not valid base64") from None


async def images_and_options(request: Request, plane: DataPlane
                             ) -> tuple[tuple[bytes, ...], dict[str, Any]]:
    """The images of a request, whatever its encoding, and its options as sent."""
    config = plane.config
    body = await read_body(request, config.body_limit_bytes)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    options: dict[str, Any] = dict(request.query_params)
    images: list[bytes] = []
    if content_type == "multipart/form-data":
        try:  # parses the body read above
            form = await replayed(request, body).form(
                max_files=config.max_images_per_request + 1, max_fields=100)
        except Exception as exc:
            raise InvalidArgument(f"malformed multipart body: {exc}") from None
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key not in IMAGE_FIELDS:
                    raise InvalidArgument(f"unexpected file field {key!r}; send images as "
                                          "'image' (or several 'images')")
                images.append(await value.read())
            elif key in options and key in LIST_FIELDS:
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
    return tuple(images), options


# --- the image routes --------------------------------------------------------------------

Answer = Callable[[DataPlane, Any, tuple[bytes, ...]], Awaitable[tuple[dict[str, Any], str]]]


async def _classify(plane: DataPlane, options: ClassifyOptions, images: tuple[bytes, ...]
                    ) -> tuple[dict[str, Any], str]:
    (result,) = await plane.classify(options.request(images))
    return result.to_dict(), result.model


async def _classify_batch(plane: DataPlane, options: ClassifyOptions,
                          images: tuple[bytes, ...]) -> tuple[dict[str, Any], str]:
    results = await plane.classify(options.request(images))
    first = results[0]
    return ({"model": first.model, "weights": first.weights,
             "results": [r.to_dict() for r in results]}, first.model)


async def _embed(plane: DataPlane, options: EmbedOptions, images: tuple[bytes, ...]
                 ) -> tuple[dict[str, Any], str]:
    results = await plane.embed(options.request(images))
    return embeddings_to_dict(results), results[0].model


async def _multicrop(plane: DataPlane, options: MulticropOptions, images: tuple[bytes, ...]
                     ) -> tuple[dict[str, Any], str]:
    (result,) = await plane.multicrop(options.request(images))
    return result.to_dict(), result.model


async def _ensemble(plane: DataPlane, options: EnsembleOptions, images: tuple[bytes, ...]
                    ) -> tuple[dict[str, Any], str]:
    (result,) = await plane.ensemble(options.request(images))
    return result.to_dict(), result.model


async def _select(plane: DataPlane, options: SelectOptions, images: tuple[bytes, ...]
                  ) -> tuple[dict[str, Any], str]:
    (result,) = await plane.select(options.request(images))
    return result.to_dict(), result.model


@dataclass(frozen=True)
class ImageRoute:
    path: str
    summary: str
    options: type[Options]
    answer: Answer
    result_schema: str  # the OpenAPI schema of a 200's body (service.openapi)
    several_images: bool = False  # "images": one or more; else exactly one "image"
    errors: tuple[int, ...] = ()  # beyond those of every image route

    @property
    def endpoint(self) -> str:
        """The `endpoint` label of its metrics."""
        return self.path.strip("/")

    def requested(self, options: Options) -> str | None:
        """What the request names, for its metric label until the model that ran is known."""
        if isinstance(options, EnsembleOptions):
            return options.ensemble or "ensemble"
        if isinstance(options, SelectOptions):
            return "select"
        return getattr(options, "model", None)


IMAGE_ROUTES = (
    ImageRoute("/classify", "Classify one image", ClassifyOptions, _classify,
               "Classification"),
    ImageRoute("/classify_batch", "Classify several images as one batch", ClassifyOptions,
               _classify_batch, "Batch", several_images=True),
    ImageRoute("/embed", "Features of one or more images (penultimate layer)", EmbedOptions,
               _embed, "Embedding", several_images=True, errors=(409,)),
    ImageRoute("/multicrop", "Classify one image averaged over crops", MulticropOptions,
               _multicrop, "Classification"),
    ImageRoute("/ensemble", "Classify one image with several models combined",
               EnsembleOptions, _ensemble, "Ensemble"),
    ImageRoute("/select", "Classify with the family variant that fits a budget",
               SelectOptions, _select, "Classification", errors=(422,)),
)


def image_endpoint(route: ImageRoute) -> Callable[[Request], Awaitable[Response]]:
    async def answer(request: Request) -> Response:
        plane: DataPlane = request.app.state.plane
        requested = request.query_params.get("model")
        try:
            async with plane.observe(route.endpoint, requested) as observation:
                images, values = await images_and_options(request, plane)
                options = parse_options(route.options, values)
                observation.label = route.requested(options)
                if not route.several_images and len(images) != 1:
                    hint = "; use /classify_batch for several" if route.path == "/classify" else ""
                    raise InvalidArgument(f"{route.path} takes exactly one image, got "
                                          f"{len(images)}{hint}")
                body, ran = await route.answer(plane, options, images)
                observation.label = ran
            return JSONResponse(body)
        except ServiceError as error:
            return error_response(error)
        except Exception:
            log.exception("unexpected error in %s", route.path)
            return internal_error_response()

    return answer


# --- the other routes --------------------------------------------------------------------

async def family_frontier(request: Request) -> Response:
    """GET /frontier?family=NAME[&format=json|png|svg][&allow_untrained=true]."""
    plane: DataPlane = request.app.state.plane
    try:
        query = parse_options(FrontierQuery, dict(request.query_params))
        data = await plane.frontier(query.request())
        if query.format == "json":
            return JSONResponse(data)
        content, media_type = await asyncio.to_thread(render_frontier, data, query.format)
        return Response(content, media_type=media_type)
    except ServiceError as error:
        return error_response(error)


async def list_models(request: Request) -> JSONResponse:
    plane: DataPlane = request.app.state.plane
    return JSONResponse({"default_model": plane.config.default_model,
                         "models": [status.to_dict() for status in plane.models()]})


async def get_model(request: Request) -> JSONResponse:
    plane: DataPlane = request.app.state.plane
    try:
        return JSONResponse(plane.model_status(request.path_params["name"]).to_dict())
    except ServiceError as error:
        return error_response(error)


def rest_routes() -> list[BaseRoute]:
    return [
        *(Route(route.path, image_endpoint(route), methods=["POST"]) for route in IMAGE_ROUTES),
        Route("/frontier", family_frontier, methods=["GET"]),
        Route("/models", list_models, methods=["GET", "POST"]),
        Route("/models/{name}", get_model, methods=["GET"]),
    ]
