"""The BentoML service: one process hosting the data plane for REST, OIP REST and gRPC.

`bentoml serve service.service:ConvZoo --port 3000` starts it. The HTTP routes are the
Starlette app of `service.http_app` (REST, OIP REST, the OpenAPI document), mounted here;
BentoML adds /livez, /readyz (true once the start-up models are loaded) and /metrics
(BentoML's own and ConvZoo's). With API keys configured, `service.auth.ApiKeyMiddleware`
guards every HTTP route, BentoML's included, except the configured open paths.
`service.frontdoor.FrontDoor` serves the page at `/`.
"""

from __future__ import annotations

import logging

import bentoml

from service import bentoml_timeout, http_guard
from service.auth import ApiKeyMiddleware
from service.body_budget import BodyBudgetMiddleware
from service.core import metrics
from service.core.config import load_config
from service.core.dataplane import DataPlane
from service.frontdoor import FrontDoor
from service.grpc import GrpcServer
from service.http_app import create_app
from service.route_labels import RestorePath
from service.serve_command import check_metrics_dir_unshared, rest_ssl_options, serve_options
from service.time_limit import RequestTimeLimit

log = logging.getLogger("convzoo")

# REST over TLS 1.2: forward-secret AEAD suites only. BentoML's default `ssl.ciphers` is
# "TLSv1", OpenSSL's TLS 1.0-era CBC/SHA-1 suites (issue 14); TLS 1.3 has its own suites,
# all AEAD. `bentoml serve --ssl-ciphers` still overrides it.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"

http_app = create_app()
# In `bentoml serve`'s own process only, before it empties the metrics directory or logs its
# URL (service/serve_command.py); elsewhere both are no-ops.
_serve_options = serve_options()
check_metrics_dir_unshared(_serve_options)


def tracing_options(http_tracing: bool) -> dict:
    """BentoML's `tracing` service options: with HTTP tracing off, every URL is excluded,
    which makes BentoML's OpenTelemetry middleware pass requests straight through."""
    return {} if http_tracing else {"excluded_urls": [".*"]}


_config = load_config()


# BentoML's own request timeout is set to the same bound as ours, and made a pass-through
# (service/bentoml_timeout.py): its configuration cannot switch it off.
@bentoml.service(name="convzoo", workers=1, traffic={"timeout": _config.request_timeout_s},
                 tracing=tracing_options(_config.http_tracing),
                 ssl={"ciphers": TLS12_CIPHERS, **rest_ssl_options(_serve_options)})
@bentoml.asgi_app(http_app, path="/")
class ConvZoo:
    def __init__(self) -> None:
        # BentoML's server logging passes only WARNING and up from loggers it does not own;
        # ours say which models loaded and where gRPC listens. An explicit level wins.
        if log.level == logging.NOTSET:
            log.setLevel(logging.INFO)
        self.plane = DataPlane(load_config())
        http_app.state.plane = self.plane
        self.grpc_server = GrpcServer(self.plane)

    @bentoml.on_startup
    async def start(self) -> None:
        await self.plane.start()
        await self.grpc_server.start()

    @bentoml.on_shutdown
    async def stop(self) -> None:
        await self.grpc_server.stop()
        await self.plane.close()

    async def __is_ready__(self) -> bool:
        return self.plane.ready

    async def __metrics__(self, content: str) -> str:
        # ConvZoo's metrics are already in `content` (multiprocess mode); GPU gauges are
        # sampled now so that each scrape sees current values.
        metrics.refresh_gpu_gauges()
        return content


# Outside our mounted app, so that BentoML's own routes (/docs.json, /schema.json, ...) are
# guarded too; the middlewares read the configuration when the worker builds the app. The
# first added is the outermost: the request-time bound, the real path back (after BentoML's
# metrics saw its route template), then the key check, then the count of bodies in flight.
ConvZoo.add_asgi_middleware(RequestTimeLimit)
ConvZoo.add_asgi_middleware(RestorePath)
ConvZoo.add_asgi_middleware(ApiKeyMiddleware)
# The page at / and its assets under /ui/, inside the key check (they are open paths).
ConvZoo.add_asgi_middleware(FrontDoor)
ConvZoo.add_asgi_middleware(BodyBudgetMiddleware)
# Before the worker builds the app: BentoML's own timeout holds each request's memory for the
# whole traffic timeout (service/bentoml_timeout.py, guarded at start-up).
bentoml_timeout.install()
# Before the worker builds uvicorn's Config: the request-head and connection limits.
http_guard.install(_config)
