"""The REST API of a real server process: every endpoint, batching, bad input, metrics."""

from __future__ import annotations

import base64
import concurrent.futures
import re

import httpx
import pytest

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


def test_classify_multipart_cat_with_real_weights(http, cat_jpeg):
    response = http.post("/classify", files={"image": ("cat.jpg", cat_jpeg, "image/jpeg")},
                         data={"top_k": "3"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "efficientnet_lite0" and body["weights"] == "pretrained"
    assert "warning" not in body
    assert len(body["predictions"]) == 3
    assert {p["index"] for p in body["predictions"]} & CAT_CLASSES
    scores = [p["score"] for p in body["predictions"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
    assert {"decode", "preprocess", "queue", "infer", "postprocess", "total"} <= set(
        body["timing_ms"])


def test_classify_base64_json_coffee(http, coffee_jpeg):
    response = http.post("/classify", json={"image": base64.b64encode(coffee_jpeg).decode(),
                                            "model": "efficientnet_lite1", "top_k": 3})
    assert response.status_code == 200, response.text
    assert {p["index"] for p in response.json()["predictions"]} & COFFEE_CLASSES


def test_classify_raw_body_with_query_options(http, cat_jpeg):
    response = http.post("/classify?top_k=1", content=cat_jpeg,
                         headers={"content-type": "image/jpeg"})
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 1


def test_lenet5_reads_digits(http, digit_pngs):
    files = [("images", (f"{i}.png", data, "image/png")) for i, (data, _) in enumerate(digit_pngs)]
    response = http.post("/classify_batch", files=files, data={"model": "lenet5", "top_k": "1"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(digit_pngs)
    predicted = [r["predictions"][0]["label"] for r in results]
    truth = [str(label) for _, label in digit_pngs]
    assert sum(p == t for p, t in zip(predicted, truth, strict=True)) >= len(truth) - 1


def test_classify_batch_gives_one_result_per_image_in_order(http, cat_jpeg, coffee_jpeg):
    response = http.post("/classify_batch", json={
        "images": [base64.b64encode(x).decode() for x in (cat_jpeg, coffee_jpeg, cat_jpeg)],
        "top_k": 3})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 3
    assert {p["index"] for p in results[0]["predictions"]} & CAT_CLASSES
    assert {p["index"] for p in results[1]["predictions"]} & COFFEE_CLASSES
    assert results[0]["predictions"] == results[2]["predictions"]


def test_models_listing_and_detail(http):
    for method in ("GET", "POST"):
        body = http.request(method, "/models").json()
        assert body["default_model"] == "efficientnet_lite0"
        by_name = {m["name"]: m for m in body["models"]}
        # The 48 registry models, and any user model fine-tuned into this store.
        assert len([m for m in by_name.values() if m["weights"] != "fine-tuned"]) == 48
        assert by_name["efficientnet_lite0"]["weights"] == "pretrained"
        assert by_name["efficientnet_lite0"]["loaded"] is True
        assert by_name["resnet50"]["weights"] == "missing"
        assert by_name["resnet50"]["published"]["top1"] == pytest.approx(76.13)
    detail = http.get("/models/mobilenet_v1_0.5_160").json()
    assert detail["ladder"] == {"alpha": 0.5, "rho": pytest.approx(160 / 224)}
    assert http.get("/models/nope").status_code == 404


def test_health_endpoints(http):
    assert http.get("/livez").status_code == 200
    assert http.get("/readyz").status_code == 200


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_concurrent_requests_are_batched(server, cat_jpeg):
    def count_and_sum(text: str) -> tuple[float, float]:
        return (_metric(text, "convzoo_batch_size_count", model="efficientnet_lite0"),
                _metric(text, "convzoo_batch_size_sum", model="efficientnet_lite0"))

    before = count_and_sum(httpx.get(server.http_url + "/metrics").text)

    def one(_: int) -> int:
        return httpx.post(server.http_url + "/classify", timeout=60,
                          files={"image": ("c.jpg", cat_jpeg, "image/jpeg")}).status_code

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        assert set(pool.map(one, range(12))) == {200}
    after = count_and_sum(httpx.get(server.http_url + "/metrics").text)
    batches, images = after[0] - before[0], after[1] - before[1]
    assert images == 12
    assert batches < 12, f"12 concurrent requests ran in {batches} batches: no batching"


def test_metrics_exports_the_documented_names(http, cat_jpeg):
    http.post("/classify", files={"image": ("c.jpg", cat_jpeg, "image/jpeg")})
    text = http.get("/metrics").text
    for name in ("convzoo_requests_total", "convzoo_request_latency_seconds_bucket",
                 "convzoo_stage_latency_seconds_bucket", "convzoo_batch_size_bucket",
                 "convzoo_images_total", "convzoo_queue_depth", "convzoo_models_loaded",
                 "convzoo_model_ready", "convzoo_model_load_seconds_bucket"):
        assert re.search(rf"^{name}[{{ ]", text, re.M), f"{name} missing from /metrics"
    for stage in ("decode", "preprocess", "queue", "infer", "postprocess"):
        assert f'stage="{stage}"' in text
    assert _metric(text, "convzoo_requests_total", endpoint="classify", outcome="ok") >= 1
    assert "bentoml_service_request_total" in text  # BentoML's own metrics stay


BAD_REQUESTS = [
    ("non-image bytes", {"files": {"image": ("x.jpg", b"definitely not a jpeg", "image/jpeg")}},
     400, "not an image file"),
    ("empty body", {"content": b"", "headers": {"content-type": "application/json"}},
     400, "empty request body"),
    ("empty image", {"content": b"", "headers": {"content-type": "image/jpeg"}},
     400, "empty body"),
    ("bad json", {"content": b"{not json", "headers": {"content-type": "application/json"}},
     400, "not valid JSON"),
    ("missing image field", {"json": {"model": "efficientnet_lite0"}},
     400, "exactly one image"),
    ("bad base64", {"json": {"image": "***"}}, 400, "not valid base64"),
    ("unknown model", {"json": {"image": "aGVsbG8=", "model": "resnet9000"}},
     404, "known models"),
    ("top_k zero", {"json": {"image": "aGVsbG8=", "top_k": 0}}, 400, "between 1 and 1000"),
    ("top_k too big", {"json": {"image": "aGVsbG8=", "top_k": 1001}}, 400, "between 1 and 1000"),
    ("top_k not a number", {"json": {"image": "aGVsbG8=", "top_k": "many"}},
     400, "must be an integer"),
    ("wrong content type", {"content": b"a=b", "headers": {"content-type": "text/plain"}},
     400, "unsupported content type"),
    ("not imported", {"json": {"image": "aGVsbG8=", "model": "resnet50"}},
     404, "python -m model_store pull resnet50"),
]


@pytest.mark.parametrize("case, request_args, status, message", BAD_REQUESTS,
                         ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_gets_a_clear_4xx(http, case, request_args, status, message):
    response = http.post("/classify", **request_args)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error["message"], error


def test_truncated_jpeg_and_bomb(http, cat_jpeg):
    truncated = http.post("/classify", files={"image": ("t.jpg", cat_jpeg[:4000], "image/jpeg")})
    assert truncated.status_code == 400 and "truncated" in truncated.json()["error"]["message"]
    from tests.unit.service.core.test_decoding import _png_header_only

    bomb = http.post("/classify", content=_png_header_only(60_000, 60_000),
                     headers={"content-type": "image/png"})
    assert bomb.status_code == 413 and bomb.json()["error"]["code"] == "image_too_large"


def test_service_keeps_serving_after_bad_input(http, cat_jpeg):
    for case in BAD_REQUESTS:
        http.post("/classify", **case[1])
    assert http.post("/classify", content=cat_jpeg,
                     headers={"content-type": "image/jpeg"}).status_code == 200
    assert http.get("/readyz").status_code == 200
