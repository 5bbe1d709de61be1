"""The HTTP app mounted into the BentoML service: REST's routes, OIP REST's and the OpenAPI
document, side by side in one Starlette app whose `state.plane` is the data plane they call
(set by `service.service` when the worker builds it). BentoML keeps /livez, /readyz and
/metrics."""

from __future__ import annotations

from starlette.applications import Starlette

from service.oip_rest import oip_routes
from service.openapi import openapi_routes
from service.rest import rest_routes


def create_app() -> Starlette:
    return Starlette(routes=[*rest_routes(), *oip_routes(), *openapi_routes()])
