"""The front door in-process: which paths it answers, the headers it adds, that nothing it
owns reaches the app behind it, that its paths are open by default, and that its files refer
to nothing outside the service."""

from __future__ import annotations

import asyncio
import re

import pytest
from starlette.responses import PlainTextResponse

from service.core.auth import ApiKeys
from service.core.config import ServingConfig
from service.frontdoor import OPEN_PATHS, STATIC_DIR, FrontDoor, is_front_door_path

BEHIND = "the app behind"


async def behind(scope, receive, send) -> None:
    await PlainTextResponse(BEHIND)(scope, receive, send)


async def call(path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One request with `path` exactly as given (no client normalises it)."""
    app = FrontDoor(behind)
    scope = {"type": "http", "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"host", b"test")], "server": ("test", 80), "client": ("c", 1)}
    sent: list[dict] = []
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if requested:  # the client stays connected until the response is complete
            await asyncio.Event().wait()
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], headers, body


async def test_the_page_is_at_the_root_with_a_same_origin_policy():
    status, headers, body = await call("/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"<title>ConvZoo</title>" in body
    assert headers["content-security-policy"].startswith("default-src 'self'")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-cache"


@pytest.mark.parametrize("asset", sorted(p.name for p in STATIC_DIR.iterdir()))
async def test_every_static_file_is_served_under_ui(asset):
    status, headers, body = await call(f"/ui/{asset}")
    assert status == 200 and body == (STATIC_DIR / asset).read_bytes()
    assert "content-security-policy" in headers


async def test_other_paths_go_to_the_app_behind():
    for path in ("/models", "/classify", "/metrics", "/uifoo", "/ui"):
        status, _, body = await call(path)
        assert (status, body) == (200, BEHIND.encode()), path


@pytest.mark.parametrize("path", ["/ui/../models", "/ui/%2e%2e/models", "/ui//models",
                                  "/ui/docs/../../service/core/auth.py", "/ui/nothing.js"])
async def test_nothing_under_ui_reaches_the_app_behind_or_outside_the_files(path):
    status, _, body = await call(path)
    assert status == 404 and BEHIND.encode() not in body


async def test_the_page_only_answers_get_and_head():
    assert (await call("/", "HEAD"))[0] == 200
    assert (await call("/", "POST"))[0] == 405


def test_the_front_door_paths_are_open_by_default_and_only_they_besides_the_probes():
    config = ServingConfig()
    assert set(OPEN_PATHS) <= set(config.open_paths)
    keys = ApiKeys.of(["k"], config.open_paths)
    probes = {"/livez", "/readyz", "/metrics"}
    for path in ("/", "/ui/app.js", "/ui/docs/", "/ui/../classify", "/models", "/classify",
                 "/openapi.json", "/docs.json", "/v2/models/x/infer", "/uix", "/livez"):
        if keys.is_open(path) and path not in probes:
            assert is_front_door_path(path), f"{path} is open but reaches the API"
    assert not keys.is_open("/models") and not keys.is_open("/openapi.json")


def test_static_files_refer_only_to_the_service():
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), (
            f"{path.name} names an outside URL")
        for reference in re.findall(r'(?:src|href)="(/[^"]*)"', text):
            local = reference.split("#")[0].split("?")[0]
            assert (not local.startswith("/ui/") or (STATIC_DIR / local[4:]).is_file()
                    or local == "/ui/docs/"), f"{path.name} refers to missing {reference}"
        for module in re.findall(r'from "\./([^"]+)"', text):
            assert (STATIC_DIR / module).is_file(), f"{path.name} imports missing {module}"
