"""Route templates as metric labels: what the middlewares in front of the app see (a bounded
set of templates), and what the app sees (the real path)."""

from __future__ import annotations

import uuid

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from service.route_labels import (
    UNMATCHED,
    RestorePath,
    RouteLabels,
    find_routes,
    labelled,
    route_template,
)


async def echo(request):
    return PlainTextResponse(request.url.path)


async def static(scope, receive, send):
    await PlainTextResponse("static")(scope, receive, send)


inner = Starlette(routes=[Route("/classify", echo, methods=["POST"]),
                          Route("/models/{name}", echo),
                          Route("/v2/models/{name}/versions/{version}/infer", echo,
                                methods=["POST"])])


class Recorder:
    """Stands for BentoML's metrics middleware: notes the path it is shown."""

    seen: list[str] = []

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        Recorder.seen.append(scope["path"])
        await self.app(scope, receive, send)


def bentoml_like_app() -> Starlette:
    """BentoML's layout: its own routes, ConvZoo's app mounted at "/", static files, the
    metrics middleware outermost and ConvZoo's middlewares (RestorePath first) inside it."""
    app = Starlette(routes=[Route("/readyz", echo), Route("/metrics", echo),
                            Mount("/static_content", app=static), Mount("/", app=inner)])
    app.add_middleware(RestorePath)
    app.add_middleware(Recorder)  # added last: outermost, as BentoML's is
    return app


def scope(path: str, method: str = "GET") -> dict:
    return {"type": "http", "path": path, "method": method, "root_path": ""}


def test_templates_come_from_the_apps_routes():
    routes = bentoml_like_app().routes
    assert route_template(routes, scope("/readyz")) == "/readyz"
    assert route_template(routes, scope("/classify", "POST")) == "/classify"
    assert route_template(routes, scope("/classify", "GET")) == "/classify"  # a 405 still
    assert route_template(routes, scope("/models/anything")) == "/models/{name}"
    assert route_template(routes, scope("/v2/models/a/versions/1/infer", "POST")) == (
        "/v2/models/{name}/versions/{version}/infer")
    assert route_template(routes, scope("/static_content/x/y.js")) == "/static_content/{path}"
    assert route_template(routes, scope("/x" + uuid.uuid4().hex)) is None


async def test_outer_middlewares_see_templates_and_the_app_the_real_path():
    Recorder.seen.clear()
    app = bentoml_like_app()
    transport = httpx.ASGITransport(app=labelled(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/models/my-model")
        assert response.text == "/models/my-model"  # the route saw the real path
        for _ in range(200):
            assert (await client.get(f"/x{uuid.uuid4().hex}")).status_code == 404
        assert (await client.get("/readyz")).text == "/readyz"
    assert set(Recorder.seen) == {"/models/{name}", UNMATCHED, "/readyz"}


def test_labelled_finds_the_app_inside_uvicorns_wrappers_once():
    app = bentoml_like_app()

    class Wrapper:  # as uvicorn's ProxyHeadersMiddleware keeps the app it wraps
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            await self.app(scope, receive, send)

    wrapped = Wrapper(app)
    assert find_routes(wrapped) is app.routes
    assert isinstance(labelled(wrapped), RouteLabels) and labelled(wrapped) is labelled(wrapped)
    bare = Wrapper(None)
    assert labelled(bare) is bare  # nothing to label: passed through


async def test_static_paths_are_remembered_and_only_those():
    labels = RouteLabels(static, bentoml_like_app().routes)
    for _ in range(3):
        labels.template(scope("/readyz"))
        labels.template(scope(f"/models/{uuid.uuid4().hex}"))
        labels.template(scope(f"/x{uuid.uuid4().hex}"))
    assert labels._static == {"/readyz": "/readyz"}
