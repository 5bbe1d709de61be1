"""The gRPC servicer's error mapping and deadline hand-off, with a stand-in core.

Every domain error must reach the client as the status code of the core's one table
(`GRPC_STATUS`), including the ones the live server cannot be made to raise on demand
(UNAVAILABLE for a model that cannot load, RESOURCE_EXHAUSTED for a full queue)."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

import grpc
import pytest

from contract._proto import grpc_predict_v2_pb2 as pb
from service.core.errors import (
    GRPC_STATUS,
    DeadlineExceeded,
    InvalidArgument,
    InvalidImage,
    ModelNotFound,
    NotReady,
    NoVariantFits,
    Overloaded,
    PayloadTooLarge,
)
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


class FakeCore:
    """Knows every model, runs nothing: classify raises `error` or returns one result."""

    ready = True

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.calls: list[tuple] = []
        self.observed: list[tuple] = []

    def spec(self, name: str) -> object:
        return object()

    @asynccontextmanager
    async def observe(self, endpoint, model):
        self.observed.append((endpoint, model))
        yield

    async def classify(self, model, images, k, deadline):
        self.calls.append((model, images, k, deadline))
        if self.error is not None:
            raise self.error
        return [{"model": "lenet5", "weights": "pretrained", "timing_ms": {"total": 2.0},
                 "predictions": [{"index": 7, "label": "7", "score": 0.9}]}]


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
    assert GRPC_STATUS[type(error)] == code.name
    context = FakeContext()
    with pytest.raises(Aborted):
        await OipServicer(FakeCore(error)).ModelInfer(infer_request(), context)
    assert context.code == code
    assert context.details == error.message
    assert "retry-after" not in context.trailing


async def test_a_long_error_message_is_cut_to_what_clients_read():
    # Issue 14: the errors of 10,000 inputs made a 90 KB status message; clients, reading
    # 8 KiB of trailers, saw "Stream removed" instead.
    long = InvalidArgument("unknown input(s) [" + ", ".join(f"'IN{i}'" for i in range(10_000))
                           + "]")
    context = FakeContext()
    with pytest.raises(Aborted):
        await OipServicer(FakeCore(long)).ModelInfer(infer_request(), context)
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT
    assert context.details.startswith("unknown input(s) ['IN0', 'IN1', ")
    assert len(context.details.encode()) < 1100 and context.details.endswith("more bytes)")


async def test_overload_is_resource_exhausted_with_retry_after():
    context = FakeContext()
    core = FakeCore(Overloaded("queue full", retry_after_s=2.6))
    with pytest.raises(Aborted):
        await OipServicer(core).ModelInfer(infer_request(), context)
    assert context.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert context.trailing == {"retry-after": "3"}
    assert core.observed == [("grpc_infer", "lenet5")]


async def test_an_unexpected_exception_is_internal_without_its_text():
    context = FakeContext()
    with pytest.raises(Aborted):
        await OipServicer(FakeCore(RuntimeError("secret path /x"))).ModelInfer(
            infer_request(), context)
    assert context.code == grpc.StatusCode.INTERNAL
    assert "secret" not in context.details and "server log" in context.details


async def test_the_grpc_deadline_becomes_the_cores_deadline():
    core = FakeCore()
    before = time.monotonic()
    response = await OipServicer(core).ModelInfer(infer_request(), FakeContext(remaining=2.0))
    (model, images, k, deadline), = core.calls
    assert (model, images, k) == ("lenet5", [b"png"], 1)
    assert before + 2.0 <= deadline <= time.monotonic() + 2.0
    assert response.id == "abc" and response.model_name == "lenet5"
    assert list(response.outputs[1].contents.int64_contents) == [7]
    await OipServicer(core).ModelInfer(infer_request(), FakeContext(remaining=None))
    assert core.calls[-1][3] is None


async def test_model_metadata_of_an_unknown_model_is_not_found():
    class UnknownCore(FakeCore):
        def spec(self, name):
            raise ModelNotFound(f"unknown model {name!r}")

    context = FakeContext()
    with pytest.raises(Aborted):
        await OipServicer(UnknownCore()).ModelMetadata(pb.ModelMetadataRequest(name="x"),
                                                       context)
    assert context.code == grpc.StatusCode.NOT_FOUND and "unknown model 'x'" in context.details


def test_every_rpc_of_the_service_is_ours_not_the_generated_stub():
    # The generated base servicer (contract/_proto/grpc_predict_v2_pb2_grpc.py, grpc_tools
    # output) answers UNIMPLEMENTED; no RPC of the service may fall through to it.
    methods = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name
    assert methods
    for name in methods:
        assert name in OipServicer.__dict__, f"{name} falls through to the generated stub"
