"""The page with API keys on: the page and its assets load without a key, the API still asks
for one, and the page asks the user for it and sends it as a bearer token, never in a URL."""

from __future__ import annotations

import httpx
import pytest

from tests.browser.conftest import open_page, serving

pytestmark = pytest.mark.integration

KEY = "front-door-test-key-7f3a"
WRONG_KEY = "not-the-key-51c9"
CONFIG = {
    "default_model": "efficientnet_lite0",
    "startup_models": ["efficientnet_lite0"],
    "api_keys": [KEY],
}
PAGE_PATHS = ("/", "/ui/app.js", "/ui/client.js", "/ui/dom.js", "/ui/app.css", "/ui/api.html",
              "/ui/api.js", "/ui/docs/", "/ui/README.md")
API_CALLS = (("GET", "/models"), ("GET", "/openapi.json"), ("POST", "/classify"),
             ("GET", "/frontier?family=efficientnet_lite"), ("GET", "/metrics.json"),
             ("GET", "/docs.json"), ("GET", "/schema.json"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("browser-keys-server"), CONFIG) as live:
        yield live


def test_page_paths_are_open_and_the_api_still_needs_the_key(server):
    for path in PAGE_PATHS:
        assert httpx.get(server.http_url + path, timeout=30).status_code == 200, path
    for method, path in API_CALLS:
        refused = httpx.request(method, server.http_url + path, timeout=30)
        assert refused.status_code == 401, (path, refused.status_code)
        assert refused.json()["error"]["code"] == "unauthenticated"
    allowed = httpx.get(server.http_url + "/models", timeout=30,
                        headers={"authorization": f"Bearer {KEY}"})
    assert allowed.status_code == 200


def is_api_call(url: str, server) -> bool:
    path = url.removeprefix(server.http_url)
    return url.startswith(server.http_url) and path != "/" and not path.startswith("/ui/")


def test_the_page_asks_for_the_key_and_sends_it_as_a_bearer_token(browser, server, cat_jpeg):
    with open_page(browser, server, allowed_statuses=(401,)) as (page, log):
        page.goto("/")
        page.wait_for_selector("#key-panel")
        assert page.get_attribute("#api-key", "type") == "password"
        page.fill("#api-key", WRONG_KEY)
        page.click("#api-key-submit")
        # The service's own reason, once a key was tried.
        page.wait_for_selector("#key-panel .key-reason:has-text('invalid API key')")
        page.fill("#api-key", KEY)
        page.click("#api-key-submit")
        page.wait_for_selector("#zoo-table tbody tr")
        assert page.is_hidden("#key-panel") and page.is_visible("#forget-key")

        page.set_input_files("#photo", files=[{"name": "chelsea.jpg", "mimeType": "image/jpeg",
                                               "buffer": cat_jpeg}])
        page.wait_for_selector("#result[data-mode=classify][data-status=done]")
        assert page.eval_on_selector_all("#top5 li", "items => items.length") == 5
        page.locator("#frontier").scroll_into_view_if_needed()
        page.wait_for_function("() => document.querySelector('#frontier-plot').naturalWidth > 0")

        # The reference page in the same tab uses the key the page was given.
        page.click("#link-api")
        page.wait_for_selector("#api[data-status=done]")
        assert page.is_hidden("#key-panel")

        api_calls = [r for r in log.requests if is_api_call(r.url, server)]
        sent = [(r.url, r.all_headers().get("authorization")) for r in api_calls]
        assert {url.removeprefix(server.http_url).split("?")[0] for url, _ in sent} >= {
            "/models", "/classify", "/frontier", "/openapi.json"}
        keyless = [url for url, auth in sent if auth is None]
        wrong = [url for url, auth in sent if auth == f"Bearer {WRONG_KEY}"]
        right = [url for url, auth in sent if auth == f"Bearer {KEY}"]
        # One try without a key, one with the wrong one, then the right one on every call.
        assert keyless == [server.http_url + "/models"] and wrong == keyless
        assert len(right) == len(sent) - 2 and sent[-1][1] == f"Bearer {KEY}"
        for request in log.requests:
            assert KEY not in request.url and WRONG_KEY not in request.url, request.url
            assert request.url.startswith(server.http_url) or request.url.startswith("blob:")
        assert page.evaluate("() => Object.keys(localStorage).length") == 0
        assert page.context.cookies() == []

        # Forgetting the key asks for it again.
        page.goto("/")
        page.wait_for_selector("#zoo-table tbody tr")
        page.click("#forget-key")
        page.wait_for_selector("#key-panel")
