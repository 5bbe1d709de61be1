"""Multi-crop and ensembles, end to end: the live server over REST, and a real in-process core.

Real weights throughout (EfficientNet-Lite0/1 on ImageNet, LeNet-5 trained on the digits) and
real photos (scikit-image's chelsea). Combined outputs are checked against the members' own
outputs computed another way, not against stored numbers.
"""

from __future__ import annotations

import base64
import itertools

import numpy as np
import pytest

from service.core.config import load_config
from service.core.crops import crop_tensors
from service.core.dataplane import DataPlane
from service.core.decoding import decode_image
from service.core.postprocess import softmax
from service.core.requests import MulticropRequest

pytestmark = pytest.mark.integration

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
LITE0, LITE1 = "efficientnet_lite0", "efficientnet_lite1"


def post(http, path: str, image: bytes, **fields):
    return http.post(path, json={"image": base64.b64encode(image).decode(), **fields})


def full_probabilities(http, model: str, image: bytes) -> np.ndarray:
    """Every class's probability from /classify (top_k = all 1000 classes)."""
    response = post(http, "/classify", image, model=model, top_k=1000)
    assert response.status_code == 200, response.text
    vector = np.zeros(1000)
    for p in response.json()["predictions"]:
        vector[p["index"]] = p["score"]
    return vector


def scores(predictions: list[dict]) -> dict[int, float]:
    return {p["index"]: p["score"] for p in predictions}


def test_ten_crop_keeps_the_cat_in_the_top_three(http, cat_jpeg):
    response = post(http, "/multicrop", cat_jpeg, model=LITE0, crops=10, top_k=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == LITE0 and body["crops"] == 10 and body["weights"] == "pretrained"
    assert body["timing_ms"]["batch_size"] >= 10
    assert CAT_CLASSES & {p["index"] for p in body["predictions"]}


def test_multicrop_form_fields_and_one_crop_equals_classify(http, cat_jpeg):
    response = http.post("/multicrop", files={"image": ("cat.jpg", cat_jpeg, "image/jpeg")},
                         data={"model": LITE0, "crops": "1", "top_k": "5"})
    assert response.status_code == 200, response.text
    classified = post(http, "/classify", cat_jpeg, model=LITE0, top_k=5).json()
    one_crop = response.json()["predictions"]
    assert [p["index"] for p in one_crop] == [p["index"] for p in classified["predictions"]]
    np.testing.assert_allclose([p["score"] for p in one_crop],
                               [p["score"] for p in classified["predictions"]], atol=1e-5)


async def test_multicrop_is_the_mean_of_per_crop_probabilities_in_one_batch(digit_pngs):
    plane = DataPlane(load_config(startup_models=("lenet5",), default_model="lenet5"))
    await plane.start()
    try:
        engine = await plane.engines.engine("lenet5")
        for png, _label in digit_pngs[:3]:
            (result,) = await plane.multicrop(MulticropRequest(images=(png,), model="lenet5",
                                                               crops=10, top_k=10))
            result = result.to_dict()
            assert result["crops"] == 10 and result["timing_ms"]["batch_size"] >= 10
            crops = crop_tensors(decode_image(png), engine.spec.input, 10)
            per_crop = np.stack([softmax(engine.backend.run(c[None])[0].astype(np.float32))
                                 for c in crops])
            expected = per_crop.mean(axis=0)
            got = scores(result["predictions"])
            assert sorted(got) == list(range(10))
            np.testing.assert_allclose([got[i] for i in range(10)], expected, atol=1e-5)
    finally:
        await plane.close()


@pytest.mark.parametrize(("fields", "weights", "method"), [
    ({"ensemble": "lite-pair"}, (0.5, 0.5), "mean"),
    ({"models": [LITE0, LITE1], "weights": [3, 1]}, (0.75, 0.25), "mean"),
    ({"models": f"{LITE0},{LITE1}", "method": "geometric"}, (0.5, 0.5), "geometric"),
])
def test_ensemble_combines_the_members_own_outputs(http, cat_jpeg, fields, weights, method):
    response = post(http, "/ensemble", cat_jpeg, top_k=5, **fields)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["models"] == [LITE0, LITE1] and body["method"] == method
    assert body["member_weights"] == pytest.approx(weights)
    assert body["ensemble"] == fields.get("ensemble") and body["weights"] == "pretrained"
    members = [full_probabilities(http, m, cat_jpeg) for m in (LITE0, LITE1)]
    if method == "mean":
        expected = weights[0] * members[0] + weights[1] * members[1]
    else:
        product = members[0] ** weights[0] * members[1] ** weights[1]
        expected = product / product.sum()
    got = scores(body["predictions"])
    # The best five of the manual combination (up to float noise: on chelsea the 5th and 6th
    # classes are 2e-5 apart), with the manual scores.
    assert min(expected[list(got)]) >= np.sort(expected)[-5] - 1e-5
    np.testing.assert_allclose(list(got.values()), expected[list(got)], atol=1e-5)
    assert CAT_CLASSES & set(got)
    for member, probabilities in zip(body["members"], members, strict=True):
        own = scores(member["predictions"])
        np.testing.assert_allclose(list(own.values()), probabilities[list(own)], atol=1e-5)
        assert member["weights"] == "pretrained" and member["latency_ms"] > 0


def test_ensemble_members_run_concurrently(http, cat_jpeg):
    """Each member's [start, start + latency] overlaps every other's: none waited for another.

    Run one after the other, the second would start after the first finished; overlap holds
    on 2 cores, where the members' inference times themselves contend for the CPU.
    """
    body = post(http, "/ensemble", cat_jpeg, ensemble="lite-pair").json()
    spans = [(m["started_ms"], m["started_ms"] + m["latency_ms"]) for m in body["members"]]
    for (start_a, end_a), (start_b, end_b) in itertools.combinations(spans, 2):
        assert start_a < end_b and start_b < end_a, spans
    assert body["timing_ms"]["total"] >= max(end for _, end in spans)


def test_ensemble_with_multicrop_repeated_form_fields(http, cat_jpeg):
    response = http.post("/ensemble", files=[("image", ("cat.jpg", cat_jpeg, "image/jpeg"))],
                         data={"models": [LITE0, LITE1], "crops": "5", "top_k": "3"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["crops"] == 5 and body["models"] == [LITE0, LITE1]
    for member in body["members"]:
        assert member["timing_ms"]["batch_size"] >= 5
        alone = post(http, "/multicrop", cat_jpeg, model=member["model"], crops=5,
                     top_k=3).json()
        np.testing.assert_allclose([p["score"] for p in member["predictions"]],
                                   [p["score"] for p in alone["predictions"]], atol=1e-5)


@pytest.mark.parametrize(("path", "fields", "status", "needles"), [
    ("/ensemble", {"models": [LITE0, "no_such_model"]}, 404, ["no_such_model"]),
    ("/ensemble", {"models": [LITE0, "lenet5"]}, 400,
     [f"{LITE0}: imagenet-1k", "lenet5: digits"]),
    ("/multicrop", {"model": LITE0, "crops": 7}, 400, ["1, 5, 10, 144"]),
    ("/ensemble", {"ensemble": "lite-pair", "crops": 3}, 400, ["1, 5, 10, 144"]),
    ("/ensemble", {"models": [LITE0, LITE1], "weights": [1, 2, 3]}, 400,
     ["3 weights for 2 members"]),
    ("/ensemble", {"ensemble": "no-such-ensemble"}, 404, ["lite-pair"]),
    ("/ensemble", {"models": [LITE0]}, 400, ["2 to 8 members"]),
])
def test_bad_requests(http, cat_jpeg, path, fields, status, needles):
    response = post(http, path, cat_jpeg, **fields)
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    for needle in needles:
        assert needle in message
