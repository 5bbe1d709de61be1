"""The page at `/`, used as a person would: a real photo (scikit-image's chelsea cat) dropped
in, each way of classifying it, the zoo, the frontier, the API reference and the docs, in
headless Chromium against one real server. What the page shows is checked against what the
REST API answers for the same request."""

from __future__ import annotations

import base64
import http.client
import re
import time
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image, ImageStat

from model_store import registry
from tests.browser.conftest import open_page, serving, store_with_random_init_lenet

pytestmark = pytest.mark.integration

CONFIG = {
    "default_model": "efficientnet_lite0",
    "startup_models": ["efficientnet_lite0", "efficientnet_lite1"],
    "batching": {"max_batch_size": 16, "max_delay_ms": 0, "max_queue": 256, "instances": 1},
}
# The page shows scores as percentages with two decimals.
SCORE_TOLERANCE = 0.006 + 1e-4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = store_with_random_init_lenet(tmp_path_factory.mktemp("browser-store"))
    with serving(tmp_path_factory.mktemp("browser-server"), CONFIG, home) as live:
        yield live


@pytest.fixture(scope="module")
def api(server):
    with httpx.Client(base_url=server.http_url, timeout=120) as client:
        yield client


def upload(page, photo: bytes, name: str = "chelsea.jpg") -> None:
    page.set_input_files("#photo", files=[{"name": name, "mimeType": "image/jpeg",
                                           "buffer": photo}])


def drop(page, photo: bytes, name: str = "chelsea.jpg") -> None:
    """Drop the photo on the drop zone, as a drag from the desktop does."""
    transfer = page.evaluate_handle("""([data, name]) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
        return transfer; }""", [base64.b64encode(photo).decode(), name])
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})


def wait_for_result(page, mode: str) -> None:
    page.wait_for_selector(f"#result[data-mode={mode}][data-status=done]")


def run(page, mode: str) -> None:
    page.click("#run")
    wait_for_result(page, mode)


def shown_predictions(page) -> list[tuple[str, float]]:
    rows = page.eval_on_selector_all(
        "#top5 li", "items => items.map(li => [li.querySelector('.label').textContent, "
                    "li.querySelector('.score').textContent])")
    return [(label, float(score.rstrip("%")) / 100) for label, score in rows]


def assert_same_predictions(shown: list[tuple[str, float]], answered: dict) -> None:
    expected = [(p["label"], p["score"]) for p in answered["predictions"]]
    assert [label for label, _ in shown] == [label for label, _ in expected]
    for (label, score), (_, wanted) in zip(shown, expected, strict=True):
        assert abs(score - wanted) <= SCORE_TOLERANCE, (label, score, wanted)


def assert_figure(cell: str, value: float | None, what: str) -> None:
    """A figure shown with one decimal (and maybe a note after it), or a dash for none."""
    if value is None:
        assert cell == "–", (what, cell)
    else:
        assert abs(float(cell.split()[0]) - value) <= 0.05 + 1e-9, (what, cell, value)


def assert_not_blank(path) -> None:
    image = Image.open(path).convert("RGB")
    stat = ImageStat.Stat(image)
    assert image.size[0] >= 800 and image.size[1] >= 600
    assert max(stat.stddev) > 20, f"screenshot is nearly uniform: stddev {stat.stddev}"
    assert len(image.getcolors(maxcolors=1 << 24)) > 500, "screenshot has almost no colours"


def test_root_is_our_page_with_its_assets_and_no_tracker(server):
    response = httpx.get(server.http_url + "/", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "text/html")
    assert "<title>ConvZoo</title>" in response.text
    assert "googletagmanager" not in response.text and "Prediction Service" not in response.text
    assert "default-src 'self'" in response.headers["content-security-policy"]
    for asset in re.findall(r'(?:src|href)="(/ui/[^"]+)"', response.text):
        assert httpx.get(server.http_url + asset, timeout=30).status_code == 200, asset


def test_nothing_under_ui_reaches_the_api(server):
    """The page's paths are open when keys are on, so none of them may lead to an API route,
    however the path is written (sent verbatim, without a client's normalisation)."""
    host = urlsplit(server.http_url)
    for path in ("/ui/../models", "/ui/%2e%2e/models", "/ui/..%2fmodels", "/ui//models"):
        connection = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        connection.close()
        assert response.status in (400, 404), (path, response.status)
        assert b"default_model" not in body, path
    assert httpx.post(server.http_url + "/", timeout=30).status_code == 405


def test_classify_a_photo_through_the_page_as_the_api_does(browser, server, api, cat_jpeg,
                                                          tmp_path):
    with open_page(browser, server, allowed_statuses=(400,)) as (page, log):
        page.goto("/")
        upload(page, cat_jpeg)  # choosing a photo runs the default: classify
        wait_for_result(page, "classify")
        answered = api.post("/classify", files={"image": ("cat.jpg", cat_jpeg, "image/jpeg")},
                            data={"model": "efficientnet_lite0", "top_k": "5"}).json()
        assert_same_predictions(shown_predictions(page), answered)
        assert page.text_content("#result-model") == "efficientnet_lite0"
        assert page.text_content("#result-weights") == "pretrained"
        assert page.is_hidden("#warning")
        # The timing breakdown shows the stages the service measured, as numbers.
        for stage in ("decode", "queue", "infer"):
            cell = page.text_content(f"#timing-table tbody td[data-stage={stage}]")
            assert float(cell) >= 0, stage
        # Not an image: the service's 400 and its message, shown as the page's error.
        page.set_input_files("#photo", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                               "buffer": b"not a photo"}])
        page.wait_for_selector("#result[data-mode=classify][data-status=error]")
        refused = api.post("/classify", files={"image": ("notes.txt", b"not a photo",
                                                         "text/plain")})
        assert refused.status_code == 400
        assert refused.json()["error"]["message"] in page.text_content("#error")
        upload(page, cat_jpeg)
        wait_for_result(page, "classify")
        screenshot = tmp_path / "page.png"
        page.screenshot(path=str(screenshot))
        assert_not_blank(screenshot)
        assert any(url.endswith("/classify") for url in log.urls)


def test_multicrop_ensemble_and_select_through_the_page(browser, server, api, cat_jpeg):
    image = {"image": ("cat.jpg", cat_jpeg, "image/jpeg")}
    with open_page(browser, server) as (page, _):
        page.goto("/")
        upload(page, cat_jpeg)
        wait_for_result(page, "classify")

        page.check("input[name=mode][value=multicrop]")
        page.select_option("#crops", "5")
        run(page, "multicrop")
        answered = api.post("/multicrop", files=image,
                            data={"model": "efficientnet_lite0", "crops": "5"}).json()
        assert_same_predictions(shown_predictions(page), answered)
        assert "5 crops" in page.text_content("#result-summary")

        page.check("input[name=mode][value=ensemble]")
        page.select_option("#crops", "1")
        checked = page.eval_on_selector_all("input[name=member]:checked",
                                            "boxes => boxes.map(b => b.value)")
        assert checked == ["efficientnet_lite0", "efficientnet_lite1"]
        run(page, "ensemble")
        answered = api.post("/ensemble", files=image, data={
            "models": "efficientnet_lite0,efficientnet_lite1", "method": "mean",
            "crops": "1"}).json()
        assert_same_predictions(shown_predictions(page), answered)
        members = page.eval_on_selector_all("#timing-table tbody th",
                                            "cells => cells.map(c => c.textContent)")
        assert members == ["request", "efficientnet_lite0", "efficientnet_lite1"]

        page.check("input[name=mode][value=select]")
        page.select_option("#family", "efficientnet_lite")
        page.fill("#budget", "5000")
        run(page, "select")
        chosen = page.text_content("#result-model")
        assert chosen in {s.name for s in registry.family("efficientnet_lite")}
        assert page.text_content("#selection-info").startswith(f"Chose {chosen}:")
        answered = api.post("/classify", files=image, data={"model": chosen}).json()
        assert_same_predictions(shown_predictions(page), answered)

        # The frontier, fetched once in view, marks that choice in its table and its plot.
        page.locator("#frontier").scroll_into_view_if_needed()
        page.wait_for_selector(f"#frontier-table tr.chosen[data-name='{chosen}']")
        page.wait_for_function("() => document.querySelector('#frontier-plot').naturalWidth > 0")
        assert page.text_content("#frontier-choice").startswith(f"Current choice: {chosen}")
        frontier = api.get("/frontier", params={"family": "efficientnet_lite"}).json()
        assert frontier["last_selection"]["chosen"] == chosen
        shown = page.eval_on_selector_all("#frontier-table tbody tr",
                                          "rows => rows.map(r => r.dataset.name)")
        assert shown == [v["name"] for v in frontier["variants"]]


def test_a_random_init_model_says_so_as_loudly_as_the_service(browser, server, api, cat_jpeg):
    with open_page(browser, server) as (page, _):
        page.goto("/")
        page.wait_for_selector("#model option[value=lenet5]", state="attached")
        page.select_option("#model", "lenet5")
        drop(page, cat_jpeg)  # dropped on the page this time, as a person drags a file in
        wait_for_result(page, "classify")
        answered = api.post("/classify", files={"image": ("cat.jpg", cat_jpeg, "image/jpeg")},
                            data={"model": "lenet5"}).json()
        assert answered["weights"] == "random-init"
        assert page.is_visible("#warning")
        assert answered["warning"] in page.text_content("#warning")
        assert page.get_attribute("#warning", "role") == "alert"
        assert page.text_content("#result-weights") == "random-init"


def test_the_zoo_lists_every_registry_entry_and_how_to_get_weights(browser, server, api):
    specs = registry.all_specs()
    listed = {m["name"]: m for m in api.get("/models").json()["models"]}
    with open_page(browser, server) as (page, _):
        page.goto("/")
        page.wait_for_selector("#zoo-table tbody tr")
        rows = page.eval_on_selector_all("#zoo-table tbody tr", """rows => rows.map(r => ({
            name: r.dataset.name, weights: r.dataset.weights,
            cells: [...r.cells].map(c => c.textContent.trim())}))""")
        assert [r["name"] for r in rows] == list(specs)
        for row in rows:
            spec, model = specs[row["name"]], listed[row["name"]]
            name, family, size, params, mult_adds, top1, source, weights, _ = row["cells"]
            assert (name, family, size) == (spec.name, spec.family, f"{spec.input.size} px")
            assert row["weights"] == model["weights"] and weights.startswith(model["weights"])
            published = spec.published
            assert_figure(top1, published.top1 if published else None, row["name"])
            assert source == (published.source if published else "–")
            figures = model["computed"] or (published and {
                "params_m": published.params_m, "mult_adds_m": published.mult_adds_m}) or {}
            for key, cell in (("params_m", params), ("mult_adds_m", mult_adds)):
                assert_figure(cell, figures.get(key), row["name"])
            pull = f"python -m model_store pull {spec.name}"
            assert (pull in weights) == (model["weights"] != "pretrained"), row["name"]
        assert listed["lenet5"]["weights"] == "random-init"

        page.select_option("#zoo-family", "mobilenet_v1")
        family = [s.name for s in specs.values() if s.family == "mobilenet_v1"]
        shown = page.eval_on_selector_all("#zoo-table tbody tr",
                                          "rows => rows.map(r => r.dataset.name)")
        assert shown == family
        assert page.text_content("#zoo-count") == f"{len(family)} of {len(specs)} variants"


def test_the_api_reference_renders_every_operation_and_schema(browser, server, api):
    document = api.get("/openapi.json").json()
    with open_page(browser, server) as (page, _):
        page.goto("/")
        page.click("#link-api")
        page.wait_for_selector("#api[data-status=done]")
        headings = page.eval_on_selector_all("#api-operations h3",
                                             "hs => hs.map(h => h.textContent)")
        expected = [f"{method} {path} — {op['summary']}" for path, item in document["paths"].items()
                    for method, op in item.items()]
        assert headings == expected
        schemas = page.eval_on_selector_all("#api-schemas h3", "hs => hs.map(h => h.textContent)")
        assert schemas == list(document["components"]["schemas"])
        # A body's fields and an operation's statuses are there as table rows.
        operation_id = document["paths"]["/classify"]["post"]["operationId"]
        classify = page.locator(f"[id='{operation_id}']").locator("xpath=..").text_content()
        assert "top_k" in classify and "413" in classify


def test_the_docs_and_metrics_links_work(browser, server):
    with open_page(browser, server) as (page, _):
        page.goto("/")
        page.click("#link-docs")
        page.wait_for_selector("main.doc-body h1")
        docs = page.eval_on_selector_all("main li a", "links => links.map(a => a.pathname)")
        assert "/ui/README.md" in docs and "/ui/docs/selection.md" in docs
        page.click("a[href='/ui/docs/selection.md']")
        page.wait_for_selector("main.doc-body h1")
        pictures = page.eval_on_selector_all(
            "main img", "imgs => imgs.map(i => [i.getAttribute('src'), i.complete && "
                        "i.naturalWidth > 0])")
        assert pictures and all(loaded for _, loaded in pictures), pictures
        # Followed from the page by the page itself: opened as a document, a plain-text page
        # would make the browser ask for /favicon.ico, which the service does not have.
        page.goto("/")
        for link, expected in (("#link-metrics", "convzoo_requests_total"),
                               ("#link-openapi", '"openapi"')):
            text = page.evaluate("async (link) => (await fetch(document.querySelector(link)"
                                 ".href)).text()", link)
            assert expected in text, link


def test_no_request_leaves_the_service(browser, server, cat_jpeg):
    """The whole tour, recorded: every request goes to the service itself. (Each test's page
    is checked the same way when it closes; this one also shows the recording sees them.)"""
    with open_page(browser, server) as (page, log):
        page.goto("/")
        upload(page, cat_jpeg)
        wait_for_result(page, "classify")
        page.locator("#frontier").scroll_into_view_if_needed()
        page.wait_for_function("() => document.querySelector('#frontier-plot').naturalWidth > 0")
        # Live: fetched again while in view (every 10 s), without a reload.
        def plots_fetched() -> int:
            return sum("format=svg" in url for url in log.urls)

        deadline = time.monotonic() + 40
        while plots_fetched() < 2 and time.monotonic() < deadline:
            page.wait_for_timeout(500)
        assert plots_fetched() >= 2, "the frontier was not refreshed while in view"
        page.goto("/ui/api.html")
        page.wait_for_selector("#api[data-status=done]")
        page.goto("/ui/README.md")
        paths = {urlsplit(url.removeprefix("blob:")).path for url in log.urls}
        assert {"/", "/ui/app.js", "/ui/app.css", "/models", "/classify", "/frontier",
                "/openapi.json", "/ui/api.html", "/ui/README.md"} <= paths
        assert not log.foreign(server.http_url)
        served = page.evaluate("() => performance.getEntriesByType('resource').map(e => e.name)")
        assert all(name.startswith(server.http_url) for name in served), served
