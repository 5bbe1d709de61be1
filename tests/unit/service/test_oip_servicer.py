"""The gRPC servicer's error mapping and deadline hand-off, with a stand-in data plane.

Every domain error must reach the client as the status code of the core's one table
(`STATUS`), with the error's code in the trailing metadata, including the ones the live server
cannot be made to raise on demand (UNAVAILABLE for a model that cannot load,
RESOURCE_EXHAUSTED for a full queue)."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

import grpc
import pytest

from contract._proto import grpc_predict_v2_pb2 as pb
from service.core.dataplane import Observation
from service.core.errors import (
    STATUS,
    DeadlineExceeded,
    InvalidArgument,
    InvalidImage,
    ModelNotFound,
    NotReady,
    NoVariantFits,
    Overloaded,
    PayloadTooLarge,
)
from service.core.requests import ClassifyRequest
from service.core.results import Classification, Prediction
from service.grpc.oip_servicer import OipServicer


class Aborted(Exception):
    pass


class FakeContext:
    def __init__(self, remaining: float | None = None) -> None:
        self.remaining = remaining
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.trailing: dict[str, str] = {}

    def time_remaining(self) -> float | None:
        return self.remaining

    async def abort(self, code, details="", trailing_metadata=()):
        self.code, self.details, self.trailing = code, details, dict(trailing_metadata)
        raise Aborted


class FakePlane:
    """Knows every model, runs nothing: a request raises `error` or gets one result."""

    ready = True

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.requests: list = []
        self.observed: list[tuple] = []

    def spec(self, name: str) -> object:
        return object()

    @asynccontextmanager
    async def observe(self, endpoint, model):
        observation = Observation(model or "lenet5")
        yield observation
        self.observed.append((endpoint, model, observation.label))

    async def answer(self, request):
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return [Classification(model="lenet5", weights="pretrained", timing_ms={"total": 2.0},
                               predictions=(Prediction(7, "7", 0.9),))]


def infer_request(model: str = "lenet5") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, id="abc")
    request.inputs.add(name="IMAGE", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        b"png")
    request.parameters["top_k"].int64_param = 1
    return request


@pytest.mark.parametrize("error, code", [
    (InvalidImage("image: not an image file"), grpc.StatusCode.INVALID_ARGUMENT),
    (PayloadTooLarge("too big"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ModelNotFound("no such model"), grpc.StatusCode.NOT_FOUND),
    (NoVariantFits("nothing fits"), grpc.StatusCode.FAILED_PRECONDITION),
    (NotReady("model failed to load"), grpc.StatusCode.UNAVAILABLE),
    (DeadlineExceeded("deadline passed while queued"), grpc.StatusCode.DEADLINE_EXCEEDED),
])
async def test_domain_errors_end_the_rpc_with_the_tables_code(error, code):
    assert STATUS[type(error)].grpc == code.name
    context = FakeContext()
    with pytest.raises(Aborted):
        await OipServicer(FakePlane(error)).ModelInfer(infer_request(), context)
    assert context.code == code
    assert context.details == error.message
    assert context.trailing == {"convzoo-error-code": error.code}


async def test_a_long_error_message_is_cut_to_what_clients_read():
    # Issue 14: the errors of 10,000 inputs made a 90 KB status message; clients, reading
    # 8 KiB of trailers, saw "Stream removed" instead.
    long = InvalidArgument("unknown input(s) [" + ", ".join(f"'IN{i}'" for i in range(10_000))
                           + "]")
    context = FakeContext()
    with pytest.raises(Aborted):
        await OipServicer(FakePlane(long)).ModelInfer(infer_request(), context)
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT
    assert context.details.startswith("unknown input(s) ['IN0', 'IN1', ")
    assert len(context.details.encode()) < 1100 and context.details.endswith("more bytes)")


async def test_overload_is_resource_exhausted_with_retry_after():
    context = FakeContext()
    plane = FakePlane(Overloaded("queue full", retry_after_s=2.6))
    with pytest.raises(Aborted):
        await OipServicer(plane).ModelInfer(infer_request(), context)
    assert context.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert context.trailing == {"convzoo-error-code": "overloaded", "retry-after": "3"}


async def test_an_unexpected_exception_is_internal_without_its_text():
    context = FakeContext()
    with pytest.raises(Aborted):
        await OipServicer(FakePlane(RuntimeError("secret path /x"))).ModelInfer(
            infer_request(), context)
    assert context.code == grpc.StatusCode.INTERNAL
    assert "secret" not in context.details and "server log" in context.details


async def test_the_grpc_deadline_becomes_the_requests_deadline():
    plane = FakePlane()
    before = time.monotonic()
    response = await OipServicer(plane).ModelInfer(infer_request(), FakeContext(remaining=2.0))
    (request,) = plane.requests
    assert isinstance(request, ClassifyRequest)
    assert (request.model, request.images, request.top_k) == ("lenet5", (b"png",), 1)
    assert before + 2.0 <= request.deadline <= time.monotonic() + 2.0
    assert response.id == "abc" and response.model_name == "lenet5"
    assert list(response.outputs[1].contents.int64_contents) == [7]
    assert plane.observed == [("grpc_infer", "lenet5", "lenet5")]
    await OipServicer(plane).ModelInfer(infer_request(), FakeContext(remaining=None))
    assert plane.requests[-1].deadline is None


async def test_a_timeout_parameter_can_only_shorten_the_grpc_deadline():
    plane = FakePlane()
    request = infer_request()
    request.parameters["timeout_s"].double_param = 0.5
    before = time.monotonic()
    await OipServicer(plane).ModelInfer(request, FakeContext(remaining=30.0))
    assert before + 0.5 <= plane.requests[-1].deadline <= time.monotonic() + 0.5
    request.parameters["timeout_s"].double_param = 60.0
    await OipServicer(plane).ModelInfer(request, FakeContext(remaining=1.0))
    assert plane.requests[-1].deadline <= time.monotonic() + 1.0


async def test_model_metadata_of_an_unknown_model_is_not_found():
    class UnknownPlane(FakePlane):
        def signature(self, name):
            raise ModelNotFound(f"unknown model {name!r}")

    context = FakeContext()
    with pytest.raises(Aborted):
        await OipServicer(UnknownPlane()).ModelMetadata(pb.ModelMetadataRequest(name="x"),
                                                        context)
    assert context.code == grpc.StatusCode.NOT_FOUND and "unknown model 'x'" in context.details
    assert context.trailing == {"convzoo-error-code": "model_not_found"}


def test_every_rpc_of_the_service_is_ours_not_the_generated_stub():
    # The generated base servicer (contract/_proto/grpc_predict_v2_pb2_grpc.py, grpc_tools
    # output) answers UNIMPLEMENTED; no RPC of the service may fall through to it.
    methods = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name
    assert methods
    for name in methods:
        assert name in OipServicer.__dict__, f"{name} falls through to the generated stub"
