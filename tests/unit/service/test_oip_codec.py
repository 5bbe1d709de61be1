"""The OIP converters: raw encodings, tensors from protobuf and JSON, the data plane's request a
ModelInfer asks for, and output tensors and parameters back in each wire form."""

from __future__ import annotations

import base64
import json
import struct
import time

import numpy as np
import pytest

from contract._proto import grpc_predict_v2_pb2 as pb
from contract.oip import DEFAULT_TOP_K, parameters_from_proto
from service import oip_codec as codec
from service.core.errors import InvalidArgument, ModelNotFound
from service.core.requests import (
    ClassifyRequest,
    EmbedRequest,
    EnsembleRequest,
    MulticropRequest,
    PixelsRequest,
    SelectRequest,
)
from service.core.results import Classification, Embedding, EnsembleResult, Prediction


def known(name: str) -> object:
    """Just enough of the data plane for `infer_call`: which models exist."""
    if name not in ("efficientnet_lite0", "lenet5"):
        raise ModelNotFound(f"unknown model {name!r}")
    return object()


def result(*predictions: tuple[int, float]) -> Classification:
    return Classification(model="lenet5", weights="random-init", warning="meaningless",
                          timing_ms={"total": 1.5, "batch_size": 2},
                          predictions=tuple(Prediction(i, str(i), s) for i, s in predictions))


RESULTS = [result((3, 0.75), (8, 0.25)), result((1, 0.5), (7, 0.375))]


# --- raw encodings -----------------------------------------------------------------------

def test_raw_bytes_round_trip_keeps_empty_binary_and_non_ascii_elements():
    elements = [b"", b"\x00\xff\x10binary", "chat noir é".encode(), b"x" * 70000]
    raw = codec.encode_bytes_elements(elements)
    # Each element is a 4-byte little-endian length, then its bytes.
    assert raw[:4] == struct.pack("<I", 0)
    assert raw[4:8] == struct.pack("<I", len(elements[1]))
    assert len(raw) == sum(4 + len(e) for e in elements)
    assert codec.decode_bytes_elements(raw, "IMAGE") == elements


@pytest.mark.parametrize("raw, message", [
    (b"\x05\x00", "inside an element's 4-byte length prefix"),
    (struct.pack("<I", 10) + b"short", "runs past the end"),
])
def test_truncated_raw_bytes_is_invalid(raw, message):
    with pytest.raises(InvalidArgument, match=message):
        codec.decode_bytes_elements(raw, "IMAGE")


def test_fp32_raw_round_trip_is_little_endian_row_major():
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) / 7
    raw = codec.tensor_to_raw(codec.Tensor("PIXELS", "FP32", array.shape, array))
    assert raw == array.astype("<f4").tobytes()
    tensor = codec.tensor_from_raw("PIXELS", "FP32", [2, 3, 2, 2], raw)
    assert tensor.shape == (2, 3, 2, 2)
    np.testing.assert_array_equal(tensor.data, array)


def test_raw_size_must_match_shape():
    with pytest.raises(InvalidArgument, match="needs 48 bytes, got 44"):
        codec.tensor_from_raw("PIXELS", "FP32", [1, 3, 2, 2], b"\x00" * 44)
    with pytest.raises(InvalidArgument, match="holds 2 elements but the raw data has 1"):
        codec.tensor_from_raw("IMAGE", "BYTES", [2], codec.encode_bytes_elements([b"a"]))


def test_unknown_datatype_and_negative_shape_are_invalid():
    with pytest.raises(InvalidArgument, match="unknown datatype 'FLOAT'"):
        codec.tensor_from_raw("PIXELS", "FLOAT", [1], b"\x00" * 4)
    with pytest.raises(InvalidArgument, match="negative dimension"):
        codec.tensor_from_elements("PIXELS", "FP32", [-1, 2], [1.0, 2.0])


def test_elements_nested_or_flat_must_fill_the_shape():
    nested = codec.tensor_from_elements("X", "INT64", [2, 2], [[1, 2], [3, 4]])
    assert nested.data.dtype == np.int64 and nested.data.tolist() == [[1, 2], [3, 4]]
    with pytest.raises(InvalidArgument, match="holds 4 elements but 3 were given"):
        codec.tensor_from_elements("X", "FP32", [2, 2], [1.0, 2.0, 3.0])


# --- what a request asks for ---------------------------------------------------------------

def image_tensor(*images: bytes) -> codec.Tensor:
    data = np.empty(len(images), dtype=object)
    data[:] = list(images)
    return codec.Tensor("IMAGE", "BYTES", (len(images),), data)


def test_infer_call_for_images_and_for_pixels():
    call = codec.infer_call(known, "lenet5", "", [image_tensor(b"a", b"b")], {"top_k": 3}, [])
    assert call.request == ClassifyRequest(images=(b"a", b"b"), model="lenet5", top_k=3)
    assert call.outputs == ["SCORES", "INDICES", "LABELS"] and call.requested == "lenet5"
    pixels = np.zeros((1, 1, 32, 32), np.float32)
    call = codec.infer_call(known, "", None,
                            [codec.Tensor("PIXELS", "FP32", pixels.shape, pixels)], {}, [])
    assert isinstance(call.request, PixelsRequest) and call.request.pixels is pixels
    assert call.request.model is None and call.request.top_k == DEFAULT_TOP_K


def test_naming_the_features_output_is_an_embed_request():
    call = codec.infer_call(known, "lenet5", "", [image_tensor(b"a", b"b")], {}, ["features"])
    assert call.request == EmbedRequest(images=(b"a", b"b"), model="lenet5", normalize=True)
    assert call.outputs == ["features"]
    for sent, normalize in (("false", False), (False, False), ("yes", True), (1, True)):
        call = codec.infer_call(known, "lenet5", "", [image_tensor(b"a")],
                                {"normalize": sent}, ["features"])
        assert call.request.normalize is normalize
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    results = [Embedding(model="lenet5", weights="pretrained", vector=row, normalized=False,
                         timing_ms={"total": 2.0}) for row in vectors]
    (tensor,) = codec.output_tensors(results, ["features"])
    assert (tensor.name, tensor.datatype, tensor.shape) == ("features", "FP32", (2, 3))
    np.testing.assert_array_equal(tensor.data, vectors)
    assert codec.response_parameters(results) == {
        "weights": "pretrained", "normalized": False, "timing_ms.total": 2.0}


@pytest.mark.parametrize("model, inputs, parameters, outputs, message", [
    ("lenet5", "image", {"normalize": "maybe"}, ["features"],
     "normalize must be true or false, got 'maybe'"),
    ("lenet5", "image", {"normalize": 2.5}, ["features"], "normalize must be true or false"),
    ("lenet5", "image", {"normalize": True}, [], "normalize applies to the features output"),
    ("lenet5", "image", {}, ["features", "SCORES"], "output features is asked alone"),
    ("lenet5", "image", {"crops": 10}, ["features"], "without crops, ensembles or selection"),
    ("ensemble", "image", {"models": "a,b"}, ["features"], "without crops, ensembles"),
    ("lenet5", "pixels", {}, ["features"], r"encoded images \(IMAGE\)"),
])
def test_the_features_output_refuses_what_does_not_apply(model, inputs, parameters, outputs,
                                                          message):
    tensors = {"image": [image_tensor(b"a")],
               "pixels": [codec.Tensor("PIXELS", "FP32", (1, 1, 32, 32),
                                       np.zeros((1, 1, 32, 32), np.float32))]}[inputs]
    with pytest.raises(InvalidArgument, match=message):
        codec.infer_call(known, model, "", tensors, parameters, outputs)


def test_composite_calls_are_typed_requests_with_their_parameters_parsed():
    image = [image_tensor(b"a")]
    call = codec.infer_call(known, "lenet5", "", image, {"crops": 5}, [])
    assert call.request == MulticropRequest(images=(b"a",), model="lenet5", crops=5)
    call = codec.infer_call(known, "ensemble", "", image,
                            {"models": "lenet5, efficientnet_lite0", "weights": "1,3",
                             "method": "geometric", "top_k": 2}, [])
    assert call.request == EnsembleRequest(
        images=(b"a",), models=("lenet5", "efficientnet_lite0"), weights=(1.0, 3.0),
        method="geometric", top_k=2)
    assert call.requested == "ensemble"
    call = codec.infer_call(known, "ensemble", "", image, {"ensemble": "lite-trio"}, [])
    assert call.requested == "lite-trio"
    call = codec.infer_call(known, "select", "", image,
                            {"family": "efficientnet_lite", "latency_budget_ms": 50,
                             "allow_untrained": "yes"}, [])
    assert call.request == SelectRequest(images=(b"a",), family="efficientnet_lite",
                                         latency_budget_ms=50.0, allow_untrained=True)
    with pytest.raises(InvalidArgument, match="weights must be numbers"):
        codec.infer_call(known, "ensemble", "", image, {"models": "a,b", "weights": "x,y"}, [])


def test_the_timeout_parameter_and_the_transport_bound_give_the_earlier_deadline():
    image = [image_tensor(b"a")]
    before = time.monotonic()
    call = codec.infer_call(known, "lenet5", "", image, {"timeout_s": 0.5}, [], 30.0)
    assert before + 0.5 <= call.request.deadline <= time.monotonic() + 0.5
    call = codec.infer_call(known, "lenet5", "", image, {"timeout_s": 30}, [], 0.25)
    assert call.request.deadline <= time.monotonic() + 0.25
    assert codec.infer_call(known, "lenet5", "", image, {}, []).request.deadline is None
    with pytest.raises(InvalidArgument, match="timeout_s must be positive"):
        codec.infer_call(known, "lenet5", "", image, {"timeout_s": 0}, [])


def test_requested_outputs_keep_their_order_without_duplicates():
    call = codec.infer_call(known, "lenet5", "1", [image_tensor(b"a")], {},
                            ["LABELS", "SCORES", "LABELS"])
    assert call.outputs == ["LABELS", "SCORES"]
    tensors = codec.output_tensors(RESULTS, call.outputs)
    assert [t.name for t in tensors] == ["LABELS", "SCORES"]
    assert tensors[0].data.tolist() == [[b"3", b"8"], [b"1", b"7"]]
    assert tensors[1].data.dtype == np.float32 and tensors[1].shape == (2, 2)


@pytest.mark.parametrize("model, inputs, parameters, outputs, error, message", [
    ("nope", "image", {}, [], ModelNotFound, "unknown model"),
    ("lenet5", "image", {}, ["PROBS"], InvalidArgument, r"unknown output\(s\) \['PROBS'\]"),
    ("lenet5", "image", {}, [], None, None),
    ("lenet5", "two", {}, [], InvalidArgument, "exactly one input"),
    ("lenet5", "mask", {}, [], InvalidArgument, r"unknown input\(s\) \['MASK'\]"),
    ("lenet5", "image-as-fp32", {}, [], InvalidArgument, "IMAGE must be BYTES, got FP32"),
    ("lenet5", "image", {"family": "resnet"}, [], InvalidArgument, "do not apply to model"),
    ("ensemble", "pixels", {"models": "a,b"}, [], InvalidArgument, "takes encoded images"),
    ("select", "image", {}, [], InvalidArgument, "needs the parameter 'family'"),
    ("lenet5", "image", {"top_k": True}, [], InvalidArgument, "top_k must be an integer"),
    # gRPC double parameters can be infinite or NaN (issue 14: INTERNAL before).
    ("lenet5", "image", {"top_k": float("inf")}, [], InvalidArgument, "top_k must be an int"),
    ("lenet5", "image", {"top_k": float("-inf")}, [], InvalidArgument, "top_k must be an int"),
    ("lenet5", "image", {"top_k": float("nan")}, [], InvalidArgument, "top_k must be an int"),
    ("lenet5", "image", {"crops": float("inf")}, [], InvalidArgument, "crops must be an int"),
    ("ensemble", "image", {"crops": float("inf")}, [], InvalidArgument, "crops must be an"),
])
def test_infer_call_refuses_what_the_signature_does_not_allow(model, inputs, parameters,
                                                                 outputs, error, message):
    tensors = {
        "image": [image_tensor(b"a")],
        "two": [image_tensor(b"a"), codec.Tensor("PIXELS", "FP32", (1,), np.zeros(1))],
        "mask": [codec.Tensor("MASK", "FP32", (1,), np.zeros(1))],
        "image-as-fp32": [codec.Tensor("IMAGE", "FP32", (1,), np.zeros(1, np.float32))],
        "pixels": [codec.Tensor("PIXELS", "FP32", (1, 3, 8, 8),
                                np.zeros((1, 3, 8, 8), np.float32))],
    }[inputs]
    if error is None:
        assert codec.infer_call(known, model, "", tensors, parameters, outputs)
        return
    with pytest.raises(error, match=message):
        codec.infer_call(known, model, "", tensors, parameters, outputs)


def test_a_version_other_than_1_is_not_found():
    with pytest.raises(ModelNotFound, match="no version '2'"):
        codec.infer_call(known, "lenet5", "2", [image_tensor(b"a")], {}, [])


def test_response_parameters_carry_weights_warning_and_timing():
    assert codec.response_parameters(RESULTS) == {
        "weights": "random-init", "warning": "meaningless", "timing_ms.total": 1.5,
        "timing_ms.batch_size": 2}


def test_response_parameters_carry_a_composites_details_as_json_where_they_are_lists():
    ensemble = EnsembleResult(
        model="ensemble", weights="pretrained", timing_ms={}, ensemble=None,
        predictions=(Prediction(1, "1", 0.5),), models=("lenet5", "x"), method="mean",
        member_weights=(0.5, 0.5), crops=1, members=())
    parameters = codec.response_parameters([ensemble])
    assert parameters["crops"] == 1 and "ensemble" not in parameters  # None: no parameter
    assert json.loads(parameters["models"]) == ["lenet5", "x"]
    assert json.loads(parameters["members"]) == []


# --- protobuf form -------------------------------------------------------------------------

def test_proto_inputs_from_contents_and_from_raw_agree():
    typed = pb.ModelInferRequest(model_name="lenet5")
    tensor = typed.inputs.add(name="IMAGE", datatype="BYTES", shape=[2])
    tensor.contents.bytes_contents.extend([b"first", b"second"])
    raw = pb.ModelInferRequest(model_name="lenet5")
    raw.inputs.add(name="IMAGE", datatype="BYTES", shape=[2])
    raw.raw_input_contents.append(codec.encode_bytes_elements([b"first", b"second"]))
    for request in (typed, raw):
        (decoded,) = codec.inputs_from_proto(request)
        assert decoded.name == "IMAGE" and decoded.data.tolist() == [b"first", b"second"]


def test_proto_raw_and_contents_together_or_miscounted_are_invalid():
    request = pb.ModelInferRequest()
    tensor = request.inputs.add(name="IMAGE", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(b"a")
    request.raw_input_contents.append(codec.encode_bytes_elements([b"a"]))
    with pytest.raises(InvalidArgument, match="both set"):
        codec.inputs_from_proto(request)
    request.raw_input_contents.append(b"")
    with pytest.raises(InvalidArgument, match="2 entries for 1 inputs"):
        codec.inputs_from_proto(request)


def test_proto_parameters_round_trip():
    request = pb.ModelInferRequest()
    codec.parameters_to_proto({"top_k": 3, "flag": True, "ratio": 0.5, "name": "x"},
                              request.parameters)
    assert request.parameters["top_k"].WhichOneof("parameter_choice") == "int64_param"
    assert parameters_from_proto(request.parameters) == {
        "top_k": 3, "flag": True, "ratio": 0.5, "name": "x"}


@pytest.mark.parametrize("raw", [True, False])
def test_proto_response_raw_or_typed(raw):
    outputs = codec.output_tensors(RESULTS, ["SCORES", "INDICES", "LABELS"])
    response = codec.infer_response_to_proto("lenet5", "req-1", outputs,
                                             codec.response_parameters(RESULTS), raw=raw)
    assert response.id == "req-1" and response.model_version == "1"
    assert [o.name for o in response.outputs] == ["SCORES", "INDICES", "LABELS"]
    assert [list(o.shape) for o in response.outputs] == [[2, 2]] * 3
    assert response.parameters["weights"].string_param == "random-init"
    if raw:
        assert not response.outputs[0].HasField("contents")
        scores, indices, labels = response.raw_output_contents
        np.testing.assert_allclose(np.frombuffer(scores, "<f4"), [0.75, 0.25, 0.5, 0.375])
        assert np.frombuffer(indices, "<i8").tolist() == [3, 8, 1, 7]
        assert codec.decode_bytes_elements(labels, "LABELS") == [b"3", b"8", b"1", b"7"]
    else:
        assert not response.raw_output_contents
        assert list(response.outputs[1].contents.int64_contents) == [3, 8, 1, 7]
        assert list(response.outputs[2].contents.bytes_contents) == [b"3", b"8", b"1", b"7"]


# --- JSON form -----------------------------------------------------------------------------

def test_json_image_elements_are_base64_and_data_urls_work():
    body = {"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [2], "data": [
        base64.b64encode(b"\x89PNG...").decode(),
        "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8jpeg").decode()]}]}
    (tensor,) = codec.inputs_from_json(body, b"")
    assert tensor.data.tolist() == [b"\x89PNG...", b"\xff\xd8jpeg"]
    body["inputs"][0]["data"][0] = "not base64!"
    with pytest.raises(InvalidArgument, match=r"IMAGE\[0\]: not valid base64"):
        codec.inputs_from_json(body, b"")


def test_json_binary_extension_slices_each_input_in_order():
    images = codec.encode_bytes_elements([b"img-a", b"img-b"])
    pixels = np.ones((1, 1, 2, 2), np.float32).tobytes()
    body = {"inputs": [
        {"name": "IMAGE", "datatype": "BYTES", "shape": [2],
         "parameters": {"binary_data_size": len(images)}},
        {"name": "PIXELS", "datatype": "FP32", "shape": [1, 1, 2, 2],
         "parameters": {"binary_data_size": len(pixels)}}]}
    first, second = codec.inputs_from_json(body, images + pixels)
    assert first.data.tolist() == [b"img-a", b"img-b"]
    assert second.data.shape == (1, 1, 2, 2) and second.data.sum() == 4
    with pytest.raises(InvalidArgument, match="3 bytes of binary data are not claimed"):
        codec.inputs_from_json(body, images + pixels + b"xyz")


def test_json_response_binary_where_asked():
    names, binary = codec.requested_outputs_from_json(
        {"parameters": {"binary_data_output": True},
         "outputs": [{"name": "LABELS", "parameters": {"binary_data": False}},
                     {"name": "SCORES"}]})
    assert names == ["LABELS", "SCORES"] and binary["LABELS"] is False and binary["SCORES"]
    body, data = codec.infer_response_to_json(
        "lenet5", "r", codec.output_tensors(RESULTS, names), {"weights": "pretrained"}, binary)
    labels, scores = body["outputs"]
    assert labels["data"] == ["3", "8", "1", "7"] and "parameters" not in labels
    assert scores["parameters"] == {"binary_data_size": 16} and "data" not in scores
    np.testing.assert_allclose(np.frombuffer(data, "<f4"), [0.75, 0.25, 0.5, 0.375])


@pytest.mark.parametrize("datatype, elements", [
    ("UINT8", [10**30]), ("UINT8", [300]), ("UINT8", [-1]), ("INT8", [float("inf")]),
    ("INT32", [2**40]), ("UINT64", [float("nan")]),
])
def test_elements_out_of_their_datatypes_range_are_invalid_arguments(datatype, elements):
    # numpy raises OverflowError for these, which was a 500 / INTERNAL (issue 14).
    with pytest.raises(InvalidArgument, match=f"data is not {datatype}"):
        codec.tensor_from_elements("X", datatype, [len(elements)], elements)


def test_thousands_of_inputs_are_refused_before_any_is_converted():
    request = pb.ModelInferRequest(model_name="lenet5")
    for i in range(10_000):
        request.inputs.add(name=f"IN{i}", datatype="NOPE", shape=[1])  # never looked at
    with pytest.raises(InvalidArgument, match="10000 inputs; send exactly one input"):
        codec.inputs_from_proto(request)
    body = {"inputs": [{"name": f"IN{i}"} for i in range(10_000)]}
    with pytest.raises(InvalidArgument, match="10000 inputs; send exactly one input"):
        codec.inputs_from_json(body, b"")
    with pytest.raises(InvalidArgument, match="10000 outputs requested; the outputs are"):
        codec.infer_call(known, "lenet5", "", [image_tensor(b"a")], {},
                         [f"OUT{i}" for i in range(10_000)])
