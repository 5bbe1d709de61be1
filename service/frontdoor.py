"""The front door: the page a person opens at `/`, served by the service itself.

It owns the paths `/` and `/ui/...`: the page and its script and style (service/static, no
build step), a readable view of /openapi.json (`/ui/api.html`), and the project's docs
rendered from their markdown (`service.doc_pages`). The page's data come from the REST API
itself (/models, /classify, /multicrop, /ensemble, /select, /frontier), with the user's API key
as a bearer token when keys are on; the page and its assets need none, so `/` and `/ui/*` are
among the configured `open_paths`, and nothing under them reaches the API.

`FrontDoor` is an ASGI middleware added with BentoML's public `add_asgi_middleware`, the way
WhiteNoise serves static files in front of a WSGI app: it answers its own paths and passes
every other request on untouched. Our page is then `/` whatever order BentoML gives its index
route and the mounted apps; BentoML's index (a Swagger UI of `@bentoml.api` methods, of which
ConvZoo has none, with a Google Tag Manager script) is no longer reachable.

Every answer carries a Content-Security-Policy that allows this origin only, so a browser
refuses any request the page might make elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import doc_pages

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The paths this module answers; both must stay in the default `open_paths`.
PAGE_PATH = "/"
ASSET_PREFIX = "/ui/"
OPEN_PATHS = (PAGE_PATH, ASSET_PREFIX + "*")

# On every answer of the front door.
HEADERS = {
    # Revalidated (ETag) on every load, so that an upgraded service never runs an old script.
    "cache-control": "no-cache",
    # blob: for the frontier plot, fetched with the API key and shown from memory.
    "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; "
                               "object-src 'none'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}

_RAW_HEADERS = [(name.encode(), value.encode()) for name, value in HEADERS.items()]


def is_front_door_path(path: str) -> bool:
    return path == PAGE_PATH or path.startswith(ASSET_PREFIX)


async def page(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html")


def create_front_door_app() -> Starlette:
    return Starlette(routes=[
        Route(PAGE_PATH, page, methods=["GET", "HEAD"]),
        *doc_pages.routes(ASSET_PREFIX.rstrip("/")),
        Mount(ASSET_PREFIX.rstrip("/"), StaticFiles(directory=STATIC_DIR)),
    ])


class FrontDoor:
    """ASGI middleware: `/` and `/ui/...` go to the front door's app, the rest to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.front_door = create_front_door_app()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_front_door_path(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_RAW_HEADERS]
            await send(message)

        await self.front_door(scope, receive, send_with_headers)
