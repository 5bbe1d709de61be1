"""The REST middleware and the gRPC interceptor around the core's key check, in-process: a
Starlette app behind `ApiKeyMiddleware`, and a `grpc.aio` server on a free loopback port
with `ApiKeyInterceptor`, health (open) and reflection (a streaming RPC, guarded)."""

from __future__ import annotations

import grpc
import httpx
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from contract._proto import grpc_predict_v2_pb2 as pb
from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from service.auth import ApiKeyMiddleware
from service.core.auth import ApiKeys
from service.grpc.auth import ApiKeyInterceptor

KEYS = ApiKeys.of(["secret-key"], ("/readyz",))


async def ok(request):
    return PlainTextResponse("ok")


@pytest.fixture
async def rest():
    app = Starlette(routes=[Route("/readyz", ok), Route("/classify", ok, methods=["POST"])])
    app.add_middleware(ApiKeyMiddleware, keys=KEYS)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        yield client


async def test_rest_refuses_a_missing_or_wrong_key_with_401(rest):
    for headers in ({}, {"authorization": "Bearer nope"}, {"x-api-key": "nope"}):
        response = await rest.post("/classify", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthenticated"
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_rest_lets_a_valid_key_and_open_paths_through(rest):
    assert (await rest.post("/classify", headers={"authorization": "Bearer secret-key"})
            ).status_code == 200
    assert (await rest.post("/classify", headers={"x-api-key": "secret-key"})).status_code == 200
    assert (await rest.get("/readyz")).status_code == 200
    # an unknown path is refused before routing: it does not reveal what exists
    assert (await rest.get("/nothing-here")).status_code == 401


class Oip(pb_grpc.GRPCInferenceServiceServicer):
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)


@pytest.fixture
async def grpc_target():
    server = grpc.aio.server(interceptors=[ApiKeyInterceptor(KEYS)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Oip(), server)
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(0)


async def test_grpc_refuses_a_missing_or_wrong_key_with_unauthenticated(grpc_target):
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for metadata in ((), (("authorization", "Bearer nope"),), (("x-api-key", "nope"),)):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.ServerLive(pb.ServerLiveRequest(), metadata=metadata)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # a streaming RPC is refused the same way
        reflection_stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = reflection_stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
            list_services="")]))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_grpc_lets_a_valid_key_and_health_checks_through(grpc_target):
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for metadata in ((("authorization", "Bearer secret-key"),),
                         (("x-api-key", "secret-key"),)):
            assert (await stub.ServerLive(pb.ServerLiveRequest(), metadata=metadata)).live
        check = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""))
        assert check.status == health_pb2.HealthCheckResponse.SERVING
