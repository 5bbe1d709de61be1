"""Third-party Open Inference Protocol clients against a live server: NVIDIA's tritonclient,
over gRPC and over HTTP (where it uses the binary tensor data extension), with no ConvZoo
code on the client side but the test's assertions."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.integration

CAT_CLASSES = set(range(281, 286))


@pytest.fixture(scope="module")
def grpc_client(server) -> triton_grpc.InferenceServerClient:
    client = triton_grpc.InferenceServerClient(server.grpc_target)
    yield client
    client.close()


@pytest.fixture(scope="module")
def http_client(server) -> triton_http.InferenceServerClient:
    client = triton_http.InferenceServerClient(server.http_url.split("://", 1)[1])
    yield client
    client.close()


def image_input(module, *images: bytes):
    tensor = module.InferInput("IMAGE", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=object))
    return tensor


def test_tritonclient_grpc_health_and_metadata(grpc_client):
    assert grpc_client.is_server_live() and grpc_client.is_server_ready()
    assert grpc_client.is_model_ready("efficientnet_lite0")
    assert grpc_client.get_server_metadata().name == "convzoo"
    metadata = grpc_client.get_model_metadata("efficientnet_lite0")
    assert metadata.platform == "onnxruntime" and list(metadata.versions) == ["1"]
    assert [(i.name, i.datatype) for i in metadata.inputs] == [("IMAGE", "BYTES"),
                                                                ("PIXELS", "FP32")]
    assert [o.name for o in metadata.outputs] == ["SCORES", "INDICES", "LABELS", "features"]


def test_tritonclient_grpc_infer_image(grpc_client, cat_jpeg, coffee_jpeg):
    result = grpc_client.infer(
        "efficientnet_lite0", [image_input(triton_grpc, cat_jpeg, coffee_jpeg)],
        outputs=[triton_grpc.InferRequestedOutput("SCORES"),
                 triton_grpc.InferRequestedOutput("LABELS")],
        parameters={"top_k": 3})
    scores, labels = result.as_numpy("SCORES"), result.as_numpy("LABELS")
    assert scores.dtype == np.float32 and scores.shape == labels.shape == (2, 3)
    assert result.as_numpy("INDICES") is None  # not requested
    assert {b"tabby", b"tiger cat", b"Egyptian cat"} & set(labels[0].tolist())
    assert labels[1][0] == b"espresso"
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert result.get_response().parameters["weights"].string_param == "pretrained"


def test_tritonclient_grpc_errors(grpc_client, cat_jpeg):
    with pytest.raises(InferenceServerException) as info:
        grpc_client.infer("no_such_model", [image_input(triton_grpc, cat_jpeg)])
    assert info.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as info:
        grpc_client.infer("efficientnet_lite0", [image_input(triton_grpc, b"not an image")])
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "not an image file" in info.value.message()


def test_tritonclient_http_health_and_metadata(http_client):
    assert http_client.is_server_live() and http_client.is_server_ready()
    assert http_client.is_model_ready("lenet5")
    assert not http_client.is_model_ready("no_such_model")
    metadata = http_client.get_model_metadata("lenet5")
    assert metadata["inputs"][1] == {"name": "PIXELS", "datatype": "FP32",
                                     "shape": [-1, 1, 32, 32]}


def test_tritonclient_http_infer_image_binary_both_ways(http_client, cat_jpeg):
    result = http_client.infer("efficientnet_lite0", [image_input(triton_http, cat_jpeg)],
                               parameters={"top_k": 4})
    # No outputs requested: tritonclient asks for all of them as binary data.
    response = result.get_response()
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    indices, labels = result.as_numpy("INDICES"), result.as_numpy("LABELS")
    assert indices.shape == labels.shape == (1, 4) and set(indices[0].tolist()) & CAT_CLASSES
    assert result.as_numpy("SCORES").dtype == np.float32
    assert response["parameters"]["weights"] == "pretrained"


def test_tritonclient_http_json_outputs_and_pixels(http_client):
    pixels = triton_http.InferInput("PIXELS", [2, 1, 32, 32], "FP32")
    pixels.set_data_from_numpy(np.zeros((2, 1, 32, 32), np.float32), binary_data=False)
    result = http_client.infer(
        "lenet5", [pixels], outputs=[triton_http.InferRequestedOutput("LABELS",
                                                                        binary_data=False)],
        parameters={"top_k": 10})
    labels = result.as_numpy("LABELS")
    assert labels.shape == (2, 10)
    assert sorted(labels[0].tolist()) == [str(d) for d in range(10)]
    assert "data" in result.get_output("LABELS")


def test_tritonclient_http_errors(http_client, cat_jpeg):
    with pytest.raises(InferenceServerException) as info:
        http_client.infer("no_such_model", [image_input(triton_http, cat_jpeg)])
    assert info.value.status() == "404" and "unknown model" in info.value.message()
