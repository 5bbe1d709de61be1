"""The Open Inference Protocol gRPC service of a live server, with raw generated stubs: every
RPC, health checking, reflection, and each error a client can cause with its status code.

UNAVAILABLE (a model that fails to load) cannot be caused on demand against the shared
server; tests/unit/service/test_oip_servicer.py checks its mapping with a stand-in core.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from contract._proto import grpc_predict_v2_pb2 as pb
from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from model_store import registry, repository
from model_store.transforms import preprocess
from service.core.config import load_config
from service.core.decoding import decode_image

pytestmark = pytest.mark.integration

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
OIP_SERVICE = "inference.GRPCInferenceService"


@pytest.fixture(scope="module")
def model_without_weights() -> str:
    """A registry model with no weights in the store: it can never be loaded."""
    stored = repository.stored_status()
    missing = [name for name in registry.all_specs() if name not in stored]
    if not missing:
        pytest.skip("every registry model has weights in this store")
    return missing[0]


@pytest.fixture(scope="module")
def channel(server) -> grpc.Channel:
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel) -> pb_grpc.GRPCInferenceServiceStub:
    return pb_grpc.GRPCInferenceServiceStub(channel)


def image_request(model: str, *images: bytes, top_k: int | None = None,
                  outputs: tuple[str, ...] = ()) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, id="req-42")
    tensor = request.inputs.add(name="IMAGE", datatype="BYTES", shape=[len(images)])
    tensor.contents.bytes_contents.extend(images)
    if top_k is not None:
        request.parameters["top_k"].int64_param = top_k
    for name in outputs:
        request.outputs.add(name=name)
    return request


def outputs_of(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """Typed output contents as arrays of the declared shapes."""
    arrays = {}
    for output in response.outputs:
        values = {"FP32": output.contents.fp32_contents,
                  "INT64": output.contents.int64_contents,
                  "BYTES": output.contents.bytes_contents}[output.datatype]
        arrays[output.name] = np.array(list(values)).reshape(list(output.shape))
    return arrays


def status_of(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


# --- server and model RPCs -----------------------------------------------------------------

def test_server_live_ready_and_metadata(stub):
    assert stub.ServerLive(pb.ServerLiveRequest()).live is True
    assert stub.ServerReady(pb.ServerReadyRequest()).ready is True
    metadata = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert metadata.name == "convzoo" and metadata.version
    assert "binary_tensor_data" in metadata.extensions


def test_model_ready_for_loaded_unloaded_and_unknown_models(stub, model_without_weights):
    assert stub.ModelReady(pb.ModelReadyRequest(name="efficientnet_lite0")).ready is True
    assert stub.ModelReady(pb.ModelReadyRequest(name="lenet5", version="1")).ready is True
    assert stub.ModelReady(pb.ModelReadyRequest(name=model_without_weights)).ready is False
    error = status_of(stub.ModelReady, pb.ModelReadyRequest(name="no_such_model"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "no_such_model" in error.details()


def test_model_metadata_describes_the_signature(stub):
    lite0 = stub.ModelMetadata(pb.ModelMetadataRequest(name="efficientnet_lite0"))
    assert (lite0.name, list(lite0.versions), lite0.platform) == (
        "efficientnet_lite0", ["1"], "onnxruntime")
    assert [(t.name, t.datatype, list(t.shape)) for t in lite0.inputs] == [
        ("IMAGE", "BYTES", [-1]), ("PIXELS", "FP32", [-1, 3, 224, 224])]
    assert [(t.name, t.datatype, list(t.shape)) for t in lite0.outputs] == [
        ("SCORES", "FP32", [-1, -1]), ("INDICES", "INT64", [-1, -1]),
        ("LABELS", "BYTES", [-1, -1]), ("features", "FP32", [-1, 1280])]
    assert lite0.properties["weights"] == "pretrained"
    lenet = stub.ModelMetadata(pb.ModelMetadataRequest(name="lenet5"))
    assert list(lenet.inputs[1].shape) == [-1, 1, 32, 32]
    assert lenet.properties["num_classes"] == "10"
    error = status_of(stub.ModelMetadata, pb.ModelMetadataRequest(name="lenet5", version="2"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "no version '2'" in error.details()


def test_infer_image_finds_the_cat(stub, cat_jpeg):
    response = stub.ModelInfer(image_request("efficientnet_lite0", cat_jpeg, top_k=3))
    assert (response.model_name, response.model_version, response.id) == (
        "efficientnet_lite0", "1", "req-42")
    arrays = outputs_of(response)
    assert arrays["SCORES"].shape == arrays["INDICES"].shape == arrays["LABELS"].shape == (1, 3)
    assert set(arrays["INDICES"][0].tolist()) & CAT_CLASSES
    assert list(arrays["SCORES"][0]) == sorted(arrays["SCORES"][0], reverse=True)
    assert response.parameters["weights"].string_param == "pretrained"
    assert "warning" not in response.parameters
    assert response.parameters["timing_ms.total"].double_param > 0


def test_infer_a_batch_honours_top_k_and_requested_outputs(stub, cat_jpeg, coffee_jpeg):
    response = stub.ModelInfer(image_request("efficientnet_lite0", cat_jpeg, coffee_jpeg,
                                             top_k=7, outputs=("LABELS", "INDICES")))
    assert [o.name for o in response.outputs] == ["LABELS", "INDICES"]
    arrays = outputs_of(response)
    assert arrays["INDICES"].shape == (2, 7)
    assert set(arrays["INDICES"][0].tolist()) & CAT_CLASSES
    assert 967 in arrays["INDICES"][1].tolist()  # espresso
    assert b"espresso" in arrays["LABELS"][1].tolist()


def test_infer_default_model_and_default_top_k(stub, cat_jpeg):
    response = stub.ModelInfer(image_request("", cat_jpeg))
    assert response.model_name == "efficientnet_lite0"
    assert list(response.outputs[0].shape) == [1, 5]


def test_raw_inputs_get_raw_outputs(stub, cat_jpeg):
    request = pb.ModelInferRequest(model_name="efficientnet_lite0")
    request.inputs.add(name="IMAGE", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(len(cat_jpeg).to_bytes(4, "little") + cat_jpeg)
    request.parameters["top_k"].int64_param = 3
    response = stub.ModelInfer(request)
    assert len(response.raw_output_contents) == 3
    assert not any(o.HasField("contents") for o in response.outputs)
    indices = np.frombuffer(response.raw_output_contents[1], "<i8")
    assert indices.shape == (3,) and set(indices.tolist()) & CAT_CLASSES


def test_infer_pixels_matches_infer_image(stub, cat_jpeg):
    """The same preprocessing done client-side and sent as PIXELS gives the same scores."""
    spec = registry.get("efficientnet_lite0")
    pixels = preprocess(decode_image(cat_jpeg, 40_000_000, "image"), spec.input)[None]
    assert pixels.shape == (1, 3, 224, 224)
    request = pb.ModelInferRequest(model_name="efficientnet_lite0")
    tensor = request.inputs.add(name="PIXELS", datatype="FP32", shape=list(pixels.shape))
    tensor.contents.fp32_contents.extend(pixels.ravel().tolist())
    request.parameters["top_k"].int64_param = 3
    from_pixels = outputs_of(stub.ModelInfer(request))
    from_image = outputs_of(stub.ModelInfer(image_request("efficientnet_lite0", cat_jpeg,
                                                          top_k=3)))
    assert from_pixels["INDICES"].tolist() == from_image["INDICES"].tolist()
    np.testing.assert_allclose(from_pixels["SCORES"], from_image["SCORES"], atol=1e-4)


def test_repository_index(stub, model_without_weights):
    everything = {m.name: m for m in stub.RepositoryIndex(pb.RepositoryIndexRequest()).models}
    # Every registry model, and any user model fine-tuned into this store (docs'
    # examples make some), which says so in its metadata.
    assert set(registry.all_specs()) <= set(everything)
    for name in set(everything) - set(registry.all_specs()):
        metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name=name))
        assert metadata.properties["weights"] == "fine-tuned", name
    assert everything["efficientnet_lite0"].state == "READY"
    assert everything["efficientnet_lite0"].version == "1"
    assert everything[model_without_weights].state == "UNAVAILABLE"
    assert everything[model_without_weights].reason == "no weights in the model store"
    ready = {m.name for m in stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True)).models}
    assert {"efficientnet_lite0", "efficientnet_lite1", "lenet5"} <= ready
    assert model_without_weights not in ready


# --- health and reflection -----------------------------------------------------------------

def test_health_service(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", OIP_SERVICE):
        response = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    error = status_of(health.Check, health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_services(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    assert set(database.get_services()) >= {
        OIP_SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
    pool = descriptor_pool.DescriptorPool(database)
    service = pool.FindServiceByName(OIP_SERVICE)
    assert {"ServerLive", "ModelMetadata", "ModelInfer", "RepositoryIndex"} <= set(
        service.methods_by_name)
    infer = pool.FindMessageTypeByName("inference.ModelInferRequest")
    assert infer.fields_by_name["raw_input_contents"].number == 7
    assert pool.FindServiceByName("grpc.health.v1.Health").methods_by_name["Check"]


# --- errors --------------------------------------------------------------------------------

def test_unknown_model_is_not_found(stub, cat_jpeg):
    error = status_of(stub.ModelInfer, image_request("no_such_model", cat_jpeg))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "unknown model 'no_such_model'" in error.details()


def test_non_image_bytes_are_invalid_argument(stub):
    error = status_of(stub.ModelInfer, image_request("efficientnet_lite0", b"plain text"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not an image file" in error.details()


@pytest.mark.parametrize("top_k", [0, 5000])
def test_top_k_out_of_range_is_invalid_argument(stub, cat_jpeg, top_k):
    error = status_of(stub.ModelInfer, image_request("efficientnet_lite0", cat_jpeg,
                                                     top_k=top_k))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "top_k must be between 1 and" in error.details()


def test_pixels_of_the_wrong_shape_are_invalid_argument(stub):
    request = pb.ModelInferRequest(model_name="efficientnet_lite0")
    tensor = request.inputs.add(name="PIXELS", datatype="FP32", shape=[1, 3, 32, 32])
    tensor.contents.fp32_contents.extend(np.zeros(3 * 32 * 32, np.float32).tolist())
    error = status_of(stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "[-1, 3, 224, 224], got [1, 3, 32, 32]" in error.details()


def test_shape_and_data_that_disagree_are_invalid_argument(stub, cat_jpeg):
    request = image_request("efficientnet_lite0", cat_jpeg)
    request.inputs[0].shape[:] = [2]
    error = status_of(stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "holds 2 elements but 1 were given" in error.details()


def test_a_message_over_the_size_limit_is_resource_exhausted(server, stub):
    limit = load_config(None, **server.config).grpc_message_limit_bytes
    error = status_of(stub.ModelInfer, image_request("efficientnet_lite0", bytes(limit + 1)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_tiny_deadline_is_deadline_exceeded_and_the_server_carries_on(stub, cat_jpeg):
    error = status_of(stub.ModelInfer, image_request("efficientnet_lite0", cat_jpeg),
                      timeout=0.005)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    response = stub.ModelInfer(image_request("efficientnet_lite0", cat_jpeg), timeout=30)
    assert set(outputs_of(response)["INDICES"][0].tolist()) & CAT_CLASSES
