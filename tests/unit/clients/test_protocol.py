"""What the SDK sends for each call over REST and gRPC, how it reads the answers, and how
server errors become ConvZooError subclasses."""

from __future__ import annotations

import base64

import pytest

from clients.client import grpc_target, rest_url
from clients.errors import (
    ConvZooError,
    InvalidArgumentError,
    ModelNotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    ServerError,
    UnavailableError,
    from_grpc,
    from_http,
)
from clients.protocol import (
    DecodeNeedsCache,
    GrpcProtocol,
    RestCall,
    RestProtocol,
    embedding_from_infer,
    results_from_infer,
    shrunk,
)
from contract._proto import grpc_predict_v2_pb2 as pb


def first_call(operation):
    return next(operation)


def finish(operation, answer):
    with pytest.raises(StopIteration) as done:
        operation.send(answer)
    return done.value.value


def test_rest_classify_sends_base64_json_and_reads_the_result():
    operation = RestProtocol().classify(b"\x89PNG", "resnet50", 3, 7.5)
    call = first_call(operation)
    assert (call.method, call.path) == ("POST", "/classify")
    assert call.json == {"image": base64.b64encode(b"\x89PNG").decode(), "model": "resnet50",
                         "top_k": 3, "timeout_s": 7.5}
    result = finish(operation, {
        "model": "resnet50", "weights": "random-init", "warning": "meaningless",
        "predictions": [{"index": 1, "label": "goldfish", "score": 0.5}],
        "timing_ms": {"total": 3.0}, "crops": 10})
    assert result.model == "resnet50" and result.top.label == "goldfish"
    assert result.warning == "meaningless" and result.details == {"crops": 10}


def test_rest_ensemble_sends_lists_and_leaves_out_what_is_unset():
    call = first_call(RestProtocol().ensemble(b"x", ["a", "b"], None, [0.7, 0.3], "mean", 5,
                                              None, None))
    assert call.path == "/ensemble"
    assert call.json == {"image": "eA==", "models": ["a", "b"], "weights": [0.7, 0.3],
                         "method": "mean", "top_k": 5}


def test_grpc_classify_batch_is_one_model_infer_with_an_image_tensor():
    operation = GrpcProtocol().classify_batch([b"one", b"two"], None, 2, None)
    call = first_call(operation)
    assert call.rpc == "ModelInfer"
    request = call.request
    assert request.model_name == ""  # the server's default model
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("IMAGE", "BYTES", [2])
    assert list(tensor.contents.bytes_contents) == [b"one", b"two"]
    assert request.parameters["top_k"].int64_param == 2

    response = pb.ModelInferResponse(model_name="lenet5")
    for name, datatype, field, values in (
            ("SCORES", "FP32", "fp32_contents", [0.5, 0.25, 0.75, 0.125]),
            ("INDICES", "INT64", "int64_contents", [3, 8, 1, 7]),
            ("LABELS", "BYTES", "bytes_contents", [b"3", b"8", b"1", b"7"])):
        output = response.outputs.add(name=name, datatype=datatype, shape=[2, 2])
        getattr(output.contents, field).extend(values)
    response.parameters["weights"].string_param = "pretrained"
    response.parameters["timing_ms.total"].double_param = 4.5
    response.parameters["timing_ms.batch_size"].int64_param = 2
    first, second = finish(operation, response)
    assert [p.index for p in first.predictions] == [3, 8]
    assert [(p.label, p.score) for p in second.predictions] == [("1", 0.75), ("7", 0.125)]
    assert first.weights == "pretrained" and first.warning is None
    assert first.timing_ms == {"total": 4.5, "batch_size": 2} and first.details == {}


def test_rest_embed_sends_the_images_and_normalize_and_reads_the_vectors():
    operation = RestProtocol().embed([b"a", b"b"], "lenet5", False, None)
    call = first_call(operation)
    assert (call.method, call.path) == ("POST", "/embed")
    assert call.json == {"images": ["YQ==", "Yg=="], "model": "lenet5", "normalize": False}
    result = finish(operation, {"model": "lenet5", "weights": "pretrained", "dim": 2,
                                "normalized": False, "embeddings": [[1, 2], [3, 4.5]],
                                "timing_ms": {"total": 1.0}})
    assert result.embeddings == [[1.0, 2.0], [3.0, 4.5]] and result.dim == 2
    assert not result.normalized and result.array().shape == (2, 2)


def test_grpc_embed_asks_for_the_features_output_and_reads_its_rows():
    operation = GrpcProtocol().embed([b"a", b"b"], None, True, None)
    request = first_call(operation).request
    assert [o.name for o in request.outputs] == ["features"]
    assert request.parameters["normalize"].bool_param is True
    assert "top_k" not in request.parameters
    response = pb.ModelInferResponse(model_name="lenet5")
    output = response.outputs.add(name="features", datatype="FP32", shape=[2, 3])
    output.contents.fp32_contents.extend([0.0, 0.6, 0.8, 1.0, 0.0, 0.0])
    response.parameters["weights"].string_param = "pretrained"
    response.parameters["normalized"].bool_param = True
    response.parameters["timing_ms.total"].double_param = 4.5
    result = finish(operation, response)
    assert result.model == "lenet5" and result.dim == 3 and result.normalized
    assert result.embeddings == [[0.0, pytest.approx(0.6), pytest.approx(0.8)],
                                 [1.0, 0.0, 0.0]]
    assert result.timing_ms == {"total": 4.5}
    with pytest.raises(ConvZooError, match="lacks a 2-D features output"):
        embedding_from_infer(pb.ModelInferResponse(model_name="lenet5"))


def test_grpc_options_travel_as_request_parameters():
    ensemble = first_call(GrpcProtocol().ensemble(b"x", ["a", "b"], None, [0.7, 0.3], "vote",
                                                  5, 10, None)).request
    assert ensemble.model_name == "ensemble"
    assert ensemble.parameters["models"].string_param == "a,b"
    assert ensemble.parameters["weights"].string_param == "0.7,0.3"
    assert ensemble.parameters["crops"].int64_param == 10
    assert "ensemble" not in ensemble.parameters
    select = first_call(GrpcProtocol().select(b"x", "mobilenet_v1", 5, None, 3, None)).request
    assert select.model_name == "select"
    assert select.parameters["latency_budget_ms"].double_param == 5.0
    assert select.parameters["family"].string_param == "mobilenet_v1"
    assert "min_top1" not in select.parameters


def test_a_response_without_the_outputs_is_an_error():
    with pytest.raises(ConvZooError, match="lacks output"):
        results_from_infer(pb.ModelInferResponse(model_name="lenet5"))


def test_grpc_models_reads_the_index_then_each_models_metadata():
    operation = GrpcProtocol().models()
    assert first_call(operation).rpc == "RepositoryIndex"
    index = pb.RepositoryIndexResponse(models=[
        pb.RepositoryIndexResponse.ModelIndex(name="lenet5", version="1", state="READY"),
        pb.RepositoryIndexResponse.ModelIndex(name="resnet50", version="1",
                                              state="UNAVAILABLE", reason="no weights")])
    call = operation.send(index)
    assert (call.rpc, call.request.name) == ("ModelMetadata", "lenet5")
    call = operation.send(pb.ModelMetadataResponse(
        name="lenet5", platform="onnxruntime",
        properties={"family": "lenet", "weights": "pretrained", "input_size": "32",
                    "num_classes": "10"}))
    assert call.request.name == "resnet50"
    lenet, resnet = finish(operation, pb.ModelMetadataResponse(
        name="resnet50", properties={"family": "resnet", "weights": "missing"}))
    assert (lenet.ready, lenet.input_size, lenet.num_classes) == (True, 32, 10)
    assert (resnet.ready, resnet.weights, resnet.details["reason"]) == (
        False, "missing", "no weights")


@pytest.mark.parametrize("status, code, cls, retryable", [
    (400, "invalid_image", InvalidArgumentError, False),
    (404, "model_not_found", ModelNotFoundError, False),
    (413, "payload_too_large", PayloadTooLargeError, False),
    (503, "not_ready", UnavailableError, True),
    (503, "overloaded", OverloadedError, True),
    (500, "internal", ServerError, False),
])
def test_http_errors(status, code, cls, retryable):
    error = from_http(status, "what went wrong", code)
    assert type(error) is cls and error.retryable is retryable
    assert (error.status, error.code, error.message) == (status, code, "what went wrong")
    assert str(error) == f"[HTTP {status}] what went wrong"


@pytest.mark.parametrize("code, retry_after, cls", [
    ("INVALID_ARGUMENT", None, InvalidArgumentError),
    ("NOT_FOUND", None, ModelNotFoundError),
    ("UNAVAILABLE", None, UnavailableError),
    ("RESOURCE_EXHAUSTED", None, PayloadTooLargeError),
    ("RESOURCE_EXHAUSTED", 2.0, OverloadedError),
    ("INTERNAL", None, ServerError),
])
def test_grpc_errors(code, retry_after, cls):
    error = from_grpc(code, "what went wrong", retry_after)
    assert type(error) is cls and error.grpc_code == code
    assert error.retry_after_s == retry_after


def test_urls():
    assert rest_url(None, False) == "http://localhost:3000"
    assert rest_url("example.org:8443/", True) == "https://example.org:8443"
    with pytest.raises(ValueError, match="plain http"):
        rest_url("http://example.org", True)
    assert grpc_target(None, False) == ("localhost:3001", False)
    assert grpc_target("grpcs://example.org:443", False) == ("example.org:443", True)
    assert grpc_target("grpc://127.0.0.1:3001", False) == ("127.0.0.1:3001", False)


def _models_listing(default: str = "efficientnet_lite0") -> dict:
    return {"default_model": default, "models": [
        {"name": "efficientnet_lite0", "family": "efficientnet_lite",
         "input": {"decode_sides": {"1": 256, "10": 256, "144": 352}}},
        {"name": "lenet5", "family": "lenet",
         "input": {"decode_sides": {"1": 32, "10": 36, "144": 50}}}]}


def test_rest_decode_needs_come_from_the_model_listing():
    operation = RestProtocol().decode_needs()
    assert first_call(operation) == RestCall("GET", "/models")
    needs = finish(operation, _models_listing())
    assert needs.default_model == "efficientnet_lite0"
    assert needs.sides["efficientnet_lite0"] == {1: 256, 10: 256, 144: 352}
    assert needs.families["lenet5"] == "lenet"


def test_grpc_decode_needs_come_from_model_metadata_properties():
    operation = GrpcProtocol().decode_needs()
    assert first_call(operation).rpc == "RepositoryIndex"
    index = pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(
        name="efficientnet_lite0")])
    call = operation.send(index)
    assert (call.rpc, call.request.name) == ("ModelMetadata", "efficientnet_lite0")
    call = operation.send(pb.ModelMetadataResponse(name="efficientnet_lite0", properties={
        "family": "efficientnet_lite", "decode_side.1": "256", "decode_side.144": "352"}))
    assert (call.rpc, call.request.name) == ("ModelMetadata", "")  # the default model
    needs = finish(operation, pb.ModelMetadataResponse(name="efficientnet_lite0"))
    assert needs.default_model == "efficientnet_lite0"
    assert needs.sides == {"efficientnet_lite0": {1: 256, 144: 352}}


def test_shrunk_asks_for_the_needs_once_then_sends_shrunk_photos():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4000, 3000), (200, 10, 10)).save(buffer, "JPEG")
    photo = buffer.getvalue()
    protocol, cache = RestProtocol(), DecodeNeedsCache()

    def run(crops: int):
        operation = shrunk(protocol, cache, [photo], lambda n: n.side_for(None, crops),
                           lambda sent: protocol.multicrop(sent[0], None, crops, 5, None))
        call = first_call(operation)
        if cache.needs is None:
            assert call == RestCall("GET", "/models")
            call = operation.send(_models_listing())
        return Image.open(io.BytesIO(base64.b64decode(call.json["image"])))

    assert min(run(10).size) == 2 * 256
    assert cache.needs is not None
    assert min(run(144).size) == 2 * 352  # the scheme's largest scale, from the cache
