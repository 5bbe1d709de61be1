"""API keys and TLS on a live server: REST over https (`bentoml serve --ssl-certfile/-keyfile`)
and gRPC over TLS (`grpc_tls_cert`/`grpc_tls_key`), both asking for a key (`api_keys` and an
`api_keys_file`), with the SDK and with raw clients; probes stay open, plaintext is refused.
The certificate is self-signed for these tests (`tests/fixtures/tls.py`).
"""

from __future__ import annotations

import re
import socket
import ssl

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients import ConvZooClient
from clients.errors import AuthenticationError, UnavailableError
from clients.transport import RetryPolicy
from contract._proto import grpc_predict_v2_pb2 as pb
from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.integration.conftest import start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INLINE_KEY, FILE_KEY = "inline-key-0123456789", "file-key-9876543210"
NO_RETRY = RetryPolicy(max_attempts=1)


@pytest.fixture(scope="module")
def secured(tmp_path_factory, certificate):
    """A server with keys and TLS on both ports; yields it with the certificate's path."""
    cert, key = certificate
    folder = tmp_path_factory.mktemp("secured")
    keys_file = folder / "api-keys"
    keys_file.write_text(f"# one key a line\n{FILE_KEY}\n")
    server = start_server(folder, {
        "default_model": "lenet5", "startup_models": ["lenet5"],
        "api_keys": [INLINE_KEY], "api_keys_file": str(keys_file),
        "grpc_tls_cert": str(cert), "grpc_tls_key": str(key),
    }, extra_args=("--ssl-certfile", str(cert), "--ssl-keyfile", str(key)), scheme="https")
    yield server, cert
    stop_server(server)


@pytest.fixture(scope="module")
def https(secured):
    server, cert = secured
    with httpx.Client(base_url=server.http_url, timeout=30,
                      verify=ssl.create_default_context(cafile=str(cert))) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_rest_asks_for_a_key_on_our_routes_and_bentomls(https, digit_pngs):
    image = {"content": digit_pngs[0][0], "headers": {"content-type": "image/png"}}
    for path in ("/classify", "/v2/models/lenet5/infer"):
        for headers in ({}, bearer("wrong-key"), {"x-api-key": "wrong-key"},
                        {"authorization": INLINE_KEY}):  # not a bearer token
            response = https.post(path, content=b"{}", headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.json()["error"]["code"] == "unauthenticated"
            assert response.headers["www-authenticate"].startswith("Bearer")
    for path in ("/models", "/openapi.json", "/docs.json", "/v2/health/ready"):
        assert https.get(path).status_code == 401, path
        assert https.get(path, headers=bearer(FILE_KEY)).status_code == 200, path
    ok = https.post("/classify", content=image["content"],
                    headers={**image["headers"], **bearer(INLINE_KEY)})
    assert ok.status_code == 200 and ok.json()["model"] == "lenet5"
    assert https.post("/classify", content=image["content"],
                      headers={**image["headers"], "x-api-key": FILE_KEY}).status_code == 200


def test_probes_and_metrics_need_no_key(https):
    for path in ("/livez", "/readyz", "/metrics"):
        assert https.get(path).status_code == 200, path


def test_plain_http_to_the_tls_port_and_an_unknown_certificate_fail(secured):
    server, _ = secured
    with pytest.raises(httpx.TransportError):
        httpx.get(server.http_url.replace("https://", "http://") + "/livez", timeout=5)
    with pytest.raises(httpx.ConnectError, match="(?i)certificate verify failed"):
        httpx.get(server.http_url + "/livez", timeout=5)  # the system's CAs do not know it


def tls12_handshake(server, cert, ciphers: str) -> str | None:
    """The suite a TLS 1.2 client offering only `ciphers` gets, or None if refused."""
    context = ssl.create_default_context(cafile=str(cert))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    host, port = server.http_url.removeprefix("https://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.cipher()[0]
    except ssl.SSLError:
        return None


def test_tls12_offers_aead_suites_and_refuses_cbc(secured):
    # BentoML's default cipher string ("TLSv1") offered only CBC/SHA-1 suites over TLS 1.2 and
    # refused these (issue 14); service.TLS12_CIPHERS sets forward-secret AEAD ones.
    server, cert = secured
    assert tls12_handshake(server, cert, "ECDHE-RSA-AES128-GCM-SHA256") == (
        "ECDHE-RSA-AES128-GCM-SHA256")
    assert tls12_handshake(server, cert, "ECDHE-RSA-AES256-GCM-SHA384") == (
        "ECDHE-RSA-AES256-GCM-SHA384")
    assert tls12_handshake(server, cert, "ECDHE-RSA-CHACHA20-POLY1305") == (
        "ECDHE-RSA-CHACHA20-POLY1305")
    for cbc in ("ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA", "AES128-SHA", "AES256-SHA"):
        assert tls12_handshake(server, cert, cbc) is None, cbc
    # Left to choose, a TLS 1.2 client gets an AEAD suite.
    assert re.search(r"GCM|CHACHA20", tls12_handshake(server, cert, "ALL:@SECLEVEL=1"))


def test_sdk_over_https_with_a_key(secured, digit_pngs):
    server, cert = secured
    trusted = ssl.create_default_context(cafile=str(cert))
    with ConvZooClient(server.http_url, tls=True, verify=trusted, api_key=FILE_KEY) as client:
        assert client.classify(digit_pngs[0][0], model="lenet5").model == "lenet5"
    with ConvZooClient(server.http_url, tls=True, verify=trusted, retry=NO_RETRY) as client, \
            pytest.raises(AuthenticationError):
        client.classify(digit_pngs[0][0], model="lenet5")


def infer_request(image: bytes) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="lenet5")
    request.inputs.add(name="IMAGE", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        image)
    return request


def test_grpc_over_tls_asks_for_a_key_but_not_for_health_checks(secured, digit_pngs):
    server, cert = secured
    credentials = grpc.ssl_channel_credentials(cert.read_bytes())
    with grpc.secure_channel(server.grpc_target, credentials) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for metadata in ((), (("authorization", "Bearer wrong-key"),),
                         (("x-api-key", "wrong-key"),)):
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(infer_request(digit_pngs[0][0]), metadata=metadata, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for metadata in ((("authorization", f"Bearer {INLINE_KEY}"),),
                         (("x-api-key", FILE_KEY),)):
            response = stub.ModelInfer(infer_request(digit_pngs[0][0]), metadata=metadata,
                                       timeout=10)
            assert response.model_name == "lenet5"
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_plaintext_grpc_to_the_tls_port_fails(secured):
    server, _ = secured
    with grpc.insecure_channel(server.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(
                pb.ServerLiveRequest(), metadata=(("x-api-key", FILE_KEY),), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_sdk_over_grpc_tls_with_a_key(secured, digit_pngs):
    server, cert = secured
    with ConvZooClient(server.grpc_target, transport="grpc", tls=True, root_certificates=cert,
                       api_key=INLINE_KEY) as client:
        assert client.classify(digit_pngs[0][0], model="lenet5").model == "lenet5"
    with ConvZooClient(server.grpc_target, transport="grpc", tls=True, root_certificates=cert,
                       retry=NO_RETRY) as client, pytest.raises(AuthenticationError):
        client.classify(digit_pngs[0][0], model="lenet5")
    with ConvZooClient(server.grpc_target, transport="grpc", retry=NO_RETRY,
                       timeout=5) as client, pytest.raises(UnavailableError):
        client.classify(digit_pngs[0][0], model="lenet5")  # plaintext to the TLS port
