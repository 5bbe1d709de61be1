"""Starts and stops the gRPC server: the OIP service, standard health checking, reflection.

It listens on the configured `grpc_port` with `grpc_max_message_bytes` (by default the REST
body limit plus 1 MiB) as the send and receive
limit (a larger message is refused with RESOURCE_EXHAUSTED by gRPC itself), over TLS when
`grpc_tls_cert` and `grpc_tls_key` are set, and asks for an API key when keys are configured
(`service.grpc.auth`; health checks stay open). Health reports
SERVING for the server ("") and for `inference.GRPCInferenceService` while the core is ready,
NOT_SERVING otherwise and once shutting down. Reflection lists all three services, so that
`grpcurl` and similar tools work without the .proto.
"""

from __future__ import annotations

import logging

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from contract._proto import grpc_predict_v2_pb2 as pb
from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from service.core.auth import ApiKeys
from service.core.config import ServingConfig
from service.core.dataplane import DataPlane
from service.grpc.auth import ApiKeyInterceptor
from service.grpc.oip_servicer import OipServicer

log = logging.getLogger("convzoo.grpc")

OIP_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVICE_NAMES = (OIP_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME)


class ReadinessHealth(health.aio.HealthServicer):
    """Answers a check of the server or the OIP service from the data plane's readiness now."""

    def __init__(self, plane: DataPlane) -> None:
        super().__init__()
        self.plane = plane

    async def Check(self, request: health_pb2.HealthCheckRequest,
                    context: grpc.aio.ServicerContext) -> health_pb2.HealthCheckResponse:
        if request.service in ("", OIP_SERVICE):
            status = (health_pb2.HealthCheckResponse.SERVING if self.plane.ready
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
            await self.set(request.service, status)  # ignored once shutting down
        return await super().Check(request, context)


def reflection_pool() -> descriptor_pool.DescriptorPool:
    """One pool with all three services: the OIP stubs live in a private pool of their own
    (see contract/generate_protos.py), health and reflection in protobuf's default one."""
    pool = descriptor_pool.DescriptorPool()
    for file in (pb.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.Add(proto)
    return pool


def tls_credentials(config: ServingConfig) -> grpc.ServerCredentials | None:
    """Server credentials from the configured PEM files, or None for a plaintext port."""
    cert, key = config.grpc_tls_cert, config.grpc_tls_key
    if not cert and not key:
        return None
    if not (cert and key):
        raise ValueError("gRPC TLS needs both grpc_tls_cert and grpc_tls_key")
    with open(key, "rb") as key_file, open(cert, "rb") as cert_file:
        return grpc.ssl_server_credentials([(key_file.read(), cert_file.read())])


class GrpcServer:
    def __init__(self, plane: DataPlane, port: int | None = None, host: str = "[::]",
                 max_message_bytes: int | None = None) -> None:
        self.plane = plane
        self.address = f"{host}:{plane.config.grpc_port if port is None else port}"
        self.max_message_bytes = max_message_bytes or plane.config.grpc_message_limit_bytes
        self.health = ReadinessHealth(plane)
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None

    async def start(self) -> int:
        """Starts serving on the running event loop; returns the port it listens on."""
        keys = ApiKeys.from_config(self.plane.config)
        credentials = tls_credentials(self.plane.config)
        options = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            # A port another process holds must fail here, not be silently shared.
            ("grpc.so_reuseport", 0),
        ]
        server = grpc.aio.server(
            interceptors=[ApiKeyInterceptor(keys)] if keys.enabled else [], options=options)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(OipServicer(self.plane), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(SERVICE_NAMES, server, pool=reflection_pool())
        try:
            self.port = (server.add_secure_port(self.address, credentials) if credentials
                         else server.add_insecure_port(self.address))
        except RuntimeError as exc:
            raise RuntimeError(f"the gRPC server cannot listen on {self.address}: {exc}"
                               ) from exc
        await server.start()
        self._server = server
        log.info("gRPC (Open Inference Protocol, health, reflection) listening on %s%s%s",
                 self.address, " with TLS" if credentials else "",
                 ", API keys required" if keys.enabled else "")
        return self.port

    async def stop(self, grace_s: float = 5.0) -> None:
        """Reports NOT_SERVING, then lets in-flight RPCs finish for up to `grace_s`."""
        if self._server is None:
            return
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace_s)
        self._server = None
