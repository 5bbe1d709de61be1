"""Multi-crop, ensembles and selection over OIP gRPC and the SDK (both transports), checked
against the REST endpoints of the same live server."""

from __future__ import annotations

import base64
import json

import grpc
import httpx
import pytest

from clients import ConvZooClient
from clients.protocol import infer_request
from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc

CAT_CLASSES = set(range(281, 286))


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _parameters(response) -> dict:
    return {k: getattr(v, v.WhichOneof("parameter_choice"))
            for k, v in response.parameters.items()}


def _indices(response) -> list[int]:
    return [int(i) for i in response.outputs[1].contents.int64_contents]


def test_multicrop_over_grpc_matches_rest(stub, server, cat_jpeg):
    response = stub.ModelInfer(infer_request("efficientnet_lite0", [cat_jpeg], crops=10,
                                             top_k=3), timeout=120)
    assert _parameters(response)["crops"] == 10
    assert set(_indices(response)) & CAT_CLASSES
    rest = httpx.post(server.http_url + "/multicrop", timeout=120,
                      files={"image": ("c.jpg", cat_jpeg, "image/jpeg")},
                      data={"model": "efficientnet_lite0", "crops": "10", "top_k": "3"}).json()
    assert _indices(response) == [p["index"] for p in rest["predictions"]]


def test_ensemble_over_grpc_matches_rest(stub, server, cat_jpeg):
    response = stub.ModelInfer(infer_request(
        "ensemble", [cat_jpeg], models=["efficientnet_lite0", "efficientnet_lite1"], top_k=3),
        timeout=120)
    assert response.model_name == "ensemble"
    members = json.loads(_parameters(response)["members"])
    assert [m["model"] for m in members] == ["efficientnet_lite0", "efficientnet_lite1"]
    rest = httpx.post(server.http_url + "/ensemble", timeout=120, json={
        "image": base64.b64encode(cat_jpeg).decode(),
        "models": ["efficientnet_lite0", "efficientnet_lite1"], "top_k": 3}).json()
    assert _indices(response) == [p["index"] for p in rest["predictions"]]
    scores = list(response.outputs[0].contents.fp32_contents)
    assert scores == pytest.approx([p["score"] for p in rest["predictions"]], abs=1e-5)


def test_named_ensemble_over_grpc(stub, cat_jpeg):
    response = stub.ModelInfer(infer_request("ensemble", [cat_jpeg], ensemble="lite-pair"),
                               timeout=120)
    assert set(_indices(response)) & CAT_CLASSES
    # The model that ran is the configured ensemble, as REST's `model` says.
    assert response.model_name == _parameters(response)["ensemble"] == "lite-pair"


def test_select_over_grpc(stub, cat_jpeg):
    response = stub.ModelInfer(infer_request("select", [cat_jpeg], family="efficientnet_lite",
                                             latency_budget_ms=60_000.0, top_k=3), timeout=120)
    parameters = _parameters(response)
    assert parameters["chosen"] in ("efficientnet_lite0", "efficientnet_lite1",
                                    "efficientnet_lite2")
    assert json.loads(parameters["selection"])["chosen"] == parameters["chosen"]
    assert response.model_name == parameters["chosen"]  # the model that ran
    assert set(_indices(response)) & CAT_CLASSES


@pytest.mark.parametrize("model, parameters, code", [
    ("ensemble", {"models": ["efficientnet_lite0", "resnet9000"]}, grpc.StatusCode.NOT_FOUND),
    ("ensemble", {"models": ["efficientnet_lite0", "lenet5"]},
     grpc.StatusCode.INVALID_ARGUMENT),
    ("ensemble", {"ensemble": "no-such-ensemble"}, grpc.StatusCode.NOT_FOUND),
    ("efficientnet_lite0", {"crops": 7}, grpc.StatusCode.INVALID_ARGUMENT),
    ("efficientnet_lite0", {"family": "efficientnet_lite"}, grpc.StatusCode.INVALID_ARGUMENT),
    ("select", {"latency_budget_ms": 10.0}, grpc.StatusCode.INVALID_ARGUMENT),
    ("select", {"family": "efficientnet_lite", "latency_budget_ms": 0.001},
     grpc.StatusCode.FAILED_PRECONDITION),
])
def test_composite_errors_map_to_grpc_codes(stub, cat_jpeg, model, parameters, code):
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(infer_request(model, [cat_jpeg], **parameters), timeout=120)
    assert info.value.code() == code
    assert info.value.details()


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_sdk_composites_on_both_transports(server, cat_jpeg, transport):
    target = server.http_url if transport == "rest" else server.grpc_target
    with ConvZooClient(target, transport=transport, timeout=120) as client:
        crops = client.multicrop(cat_jpeg, model="efficientnet_lite0", crops=5, top_k=3)
        assert {p.index for p in crops.predictions} & CAT_CLASSES
        pair = client.ensemble(cat_jpeg, models=["efficientnet_lite0", "efficientnet_lite1"],
                               top_k=3)
        assert {p.index for p in pair.predictions} & CAT_CLASSES
        chosen = client.select(cat_jpeg, family="efficientnet_lite", latency_budget_ms=60_000)
        assert chosen.weights == "pretrained"
        assert {p.index for p in chosen.predictions} & CAT_CLASSES
