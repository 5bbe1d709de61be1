"""The OIP REST routes with plain JSON: base64 IMAGE elements, the error object, readiness as
status codes and the repository index (their metrics label: test_grpc_rest_batching.py)."""

from __future__ import annotations

import base64

import pytest

pytestmark = pytest.mark.integration

CAT_CLASSES = set(range(281, 286))


def infer_body(*images: bytes, **parameters) -> dict:
    return {"id": "rest-1", "parameters": parameters, "inputs": [{
        "name": "IMAGE", "datatype": "BYTES", "shape": [len(images)],
        "data": [base64.b64encode(i).decode() for i in images]}]}


def test_server_routes(http):
    assert http.get("/v2").json()["name"] == "convzoo"
    assert http.get("/v2/health/live").json() == {"live": True}
    ready = http.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}


def test_model_routes(http):
    assert http.get("/v2/models/lenet5").json()["platform"] == "onnxruntime"
    assert http.get("/v2/models/lenet5/versions/1").json()["versions"] == ["1"]
    assert http.get("/v2/models/lenet5/ready").json() == {"name": "lenet5", "ready": True}
    missing = http.get("/v2/models/no_such_model/ready")
    assert missing.status_code == 404
    assert "unknown model" in missing.json()["error"]
    assert missing.json()["code"] == "model_not_found"


def test_infer_with_base64_json(http, cat_jpeg):
    response = http.post("/v2/models/efficientnet_lite0/infer", json=infer_body(cat_jpeg,
                                                                                 top_k=3))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["id"]) == ("efficientnet_lite0", "rest-1")
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["INDICES"]["shape"] == [1, 3]
    assert set(outputs["INDICES"]["data"]) & CAT_CLASSES
    assert len(outputs["LABELS"]["data"]) == 3 and isinstance(outputs["LABELS"]["data"][0], str)
    assert body["parameters"]["weights"] == "pretrained"


@pytest.mark.parametrize("body, status, message", [
    ({"inputs": []}, 400, "non-empty 'inputs'"),
    (infer_body(b"plain text"), 400, "not an image file"),
    (infer_body(b"x", top_k=0), 400, "top_k must be between"),
])
def test_infer_errors_are_oip_error_objects(http, body, status, message):
    response = http.post("/v2/models/efficientnet_lite0/infer", json=body)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_repository_index(http):
    ready = http.post("/v2/repository/index", json={"ready": True}).json()
    assert {"efficientnet_lite0", "lenet5"} <= {m["name"] for m in ready}
    assert all(m["state"] == "READY" for m in ready)

