"""The SDK (sync and async, REST and gRPC) and its CLI against a live server, and its retries
against small local servers that fail the first calls."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
from concurrent import futures
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from clients import (
    AsyncConvZooClient,
    ConvZooClient,
    DeadlineExceededError,
    InvalidArgumentError,
    ModelNotFoundError,
    RetryPolicy,
    UnavailableError,
)
from contract._proto import grpc_predict_v2_pb2 as pb
from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CAT_CLASSES = set(range(281, 286))
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05)
NO_RETRY = RetryPolicy(max_attempts=1)


@pytest.fixture(scope="module", params=["rest", "grpc"])
def transport(request) -> str:
    return request.param


def url_for(server, transport: str) -> str:
    return server.http_url if transport == "rest" else server.grpc_target


@pytest.fixture(scope="module")
def client(server, transport) -> ConvZooClient:
    with ConvZooClient(url_for(server, transport), transport=transport) as client:
        yield client


def assert_cat(result, model: str = "efficientnet_lite0") -> None:
    assert result.model == model and result.weights == "pretrained" and result.warning is None
    assert {p.index for p in result.predictions[:3]} & CAT_CLASSES
    assert [p.score for p in result.predictions] == sorted(
        (p.score for p in result.predictions), reverse=True)
    assert result.timing_ms["total"] > 0


# --- against the live server ---------------------------------------------------------------

def test_classify(client, cat_jpeg):
    result = client.classify(cat_jpeg, top_k=4)
    assert_cat(result)
    assert len(result.predictions) == 4


def test_classify_accepts_arrays_pil_images_and_paths(client, cat_jpeg, tmp_path):
    from skimage import data

    array = data.chelsea()
    path = tmp_path / "chelsea.png"
    Image.fromarray(array).save(path)
    for image in (array, Image.fromarray(array), path, str(path)):
        assert {p.index for p in client.classify(image, top_k=3).predictions} & CAT_CLASSES


def test_classify_batch(client, cat_jpeg, coffee_jpeg):
    cat, coffee = client.classify_batch([cat_jpeg, coffee_jpeg], model="efficientnet_lite1",
                                        top_k=3)
    assert_cat(cat, "efficientnet_lite1")
    assert coffee.top.label == "espresso" and coffee.top.index == 967


def test_models(client):
    models = {m.name: m for m in client.models()}
    lite0, lenet = models["efficientnet_lite0"], models["lenet5"]
    assert lite0.ready and lite0.weights == "pretrained" and lite0.input_size == 224
    assert (lenet.family, lenet.num_classes, lenet.input_size) == ("lenet", 10, 32)
    assert any(not m.ready for m in models.values())


def test_server_errors_are_typed(client, transport):
    with pytest.raises(ModelNotFoundError) as info:
        client.classify(b"\x89PNG", model="no_such_model")
    assert "no_such_model" in info.value.message
    if transport == "rest":
        assert info.value.status == 404 and info.value.code == "model_not_found"
    else:
        assert info.value.grpc_code == "NOT_FOUND"
    with pytest.raises(InvalidArgumentError, match="not an image file"):
        client.classify(b"plain text")


def test_a_tiny_timeout_is_deadline_exceeded(client, cat_jpeg):
    with pytest.raises(DeadlineExceededError):
        client.classify(cat_jpeg, timeout=0.001)


async def test_async_client(server, transport, cat_jpeg, coffee_jpeg):
    async with AsyncConvZooClient(url_for(server, transport), transport=transport) as client:
        assert_cat(await client.classify(cat_jpeg, top_k=3))
        results = await client.classify_batch([cat_jpeg, coffee_jpeg], top_k=2)
        assert [len(r.predictions) for r in results] == [2, 2]
        assert results[1].top.label == "espresso"
        assert "lenet5" in {m.name for m in await client.models()}
        with pytest.raises(ModelNotFoundError):
            await client.classify(cat_jpeg, model="no_such_model")


# --- the CLI -------------------------------------------------------------------------------

def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clients", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_classify_table_and_json(server, cat_jpeg, tmp_path):
    image = tmp_path / "cat.jpg"
    image.write_bytes(cat_jpeg)
    table = cli("classify", str(image), "--model", "efficientnet_lite0", "--top-k", "3",
                "--url", server.http_url)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == f"{image}: efficientnet_lite0 (pretrained)"
    assert lines[1].split() == ["rank", "index", "label", "score"]
    assert len(lines) == 5 and lines[2].split()[0] == "1"
    result = cli("classify", str(image), "--top-k", "2", "--grpc", "--url", server.grpc_target,
                 "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["model"] == "efficientnet_lite0" and len(body["predictions"]) == 2
    assert {p["index"] for p in body["predictions"]} & CAT_CLASSES


def test_cli_models_and_errors(server, tmp_path):
    models = cli("models", "--url", server.http_url, "--json")
    assert models.returncode == 0, models.stderr
    assert "efficientnet_lite0" in {m["name"] for m in json.loads(models.stdout)}
    image = tmp_path / "not-an-image.jpg"
    image.write_bytes(b"plain text")
    failed = cli("classify", str(image), "--url", server.http_url)
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: [HTTP 400]") and "not an image" in failed.stderr


# --- retries against local servers that fail first ----------------------------------------

CLASSIFY_BODY = {"model": "lenet5", "weights": "pretrained", "timing_ms": {"total": 1.0},
                 "predictions": [{"index": 7, "label": "7", "score": 0.9}]}


@contextmanager
def local_http(failures: int, certificate: tuple[Path, Path] | None = None):
    """Answers 503 (not ready) to the first `failures` requests, then a classification;
    over TLS when given a (certificate, key). Yields its URL and what each request held."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["content-length"])
            seen.append({"path": self.path, "authorization": self.headers["authorization"],
                         "body": json.loads(self.rfile.read(length))})
            failing = len(seen) <= failures
            status, body = ((503, {"error": {"code": "not_ready", "message": "loading"}})
                            if failing else (200, CLASSIFY_BODY))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scheme = "http"
    if certificate:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*certificate)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://localhost:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def flaky_http():
    with local_http(failures=2) as served:
        yield served


def test_rest_retries_503_with_the_api_key_then_succeeds(flaky_http):
    url, seen = flaky_http
    with ConvZooClient(url, retry=FAST_RETRY, api_key="s3cret", timeout=10) as client:
        result = client.classify(b"\x89PNG", model="lenet5", top_k=1)
    assert result.top.label == "7"
    assert len(seen) == 3 and {s["path"] for s in seen} == {"/classify"}
    assert {s["authorization"] for s in seen} == {"Bearer s3cret"}
    assert seen[0]["body"]["model"] == "lenet5" and seen[0]["body"]["timeout_s"] == 10


def test_rest_gives_up_after_max_attempts(flaky_http):
    url, seen = flaky_http
    policy = RetryPolicy(max_attempts=2, initial_backoff_s=0.01, max_backoff_s=0.01)
    with ConvZooClient(url, retry=policy) as client, pytest.raises(UnavailableError) as info:
        client.classify(b"\x89PNG")
    assert len(seen) == 2 and info.value.status == 503 and info.value.message == "loading"


class FlakyServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.metadata: list[dict] = []

    def ModelInfer(self, request, context):
        self.metadata.append(dict(context.invocation_metadata()))
        if len(self.metadata) <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        response = pb.ModelInferResponse(model_name=request.model_name or "lenet5")
        for name, datatype, field, value in (("SCORES", "FP32", "fp32_contents", 0.9),
                                             ("INDICES", "INT64", "int64_contents", 7),
                                             ("LABELS", "BYTES", "bytes_contents", b"7")):
            getattr(response.outputs.add(name=name, datatype=datatype, shape=[1, 1]).contents,
                    field).append(value)
        response.parameters["weights"].string_param = "pretrained"
        return response


@contextmanager
def local_grpc(failures: int, certificate: tuple[Path, Path] | None = None):
    servicer = FlakyServicer(failures)
    server = grpc.server(futures.ThreadPoolExecutor(2))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    if certificate:
        credentials = grpc.ssl_server_credentials(
            [(certificate[1].read_bytes(), certificate[0].read_bytes())])
        port = server.add_secure_port("localhost:0", credentials)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"localhost:{port}", servicer
    finally:
        server.stop(0)


@pytest.fixture
def flaky_grpc():
    with local_grpc(failures=2) as served:
        yield served


def test_grpc_retries_unavailable_with_the_api_key_then_succeeds(flaky_grpc):
    target, servicer = flaky_grpc
    with ConvZooClient(target, transport="grpc", retry=FAST_RETRY, api_key="s3cret") as client:
        result = client.classify(np.zeros((8, 8, 3), np.uint8), model="lenet5")
    assert (result.model, result.top.index, result.top.label) == ("lenet5", 7, "7")
    assert len(servicer.metadata) == 3
    assert {m["authorization"] for m in servicer.metadata} == {"Bearer s3cret"}


async def test_async_grpc_retries_too(flaky_grpc):
    target, servicer = flaky_grpc
    async with AsyncConvZooClient(target, transport="grpc", retry=FAST_RETRY) as client:
        assert (await client.classify(b"\x89PNG")).top.index == 7
    assert len(servicer.metadata) == 3


# --- TLS -----------------------------------------------------------------------------------

def test_rest_over_tls_verifies_the_server(certificate):
    cert, _ = certificate
    with local_http(failures=0, certificate=certificate) as (url, seen):
        trusted = ssl.create_default_context(cafile=str(cert))
        with ConvZooClient(url, tls=True, verify=trusted) as client:
            assert client.classify(b"\x89PNG").top.index == 7
        # The system's CAs do not know this certificate.
        with ConvZooClient(url, retry=NO_RETRY) as client, pytest.raises(
                UnavailableError, match="(?i)certificate verify failed"):
            client.classify(b"\x89PNG")
    assert len(seen) == 1


def test_grpc_over_tls_with_root_certificates(certificate):
    cert, _ = certificate
    with local_grpc(failures=0, certificate=certificate) as (target, servicer):
        with ConvZooClient(target, transport="grpc", tls=True,
                           root_certificates=cert) as client:
            assert client.classify(b"\x89PNG").top.index == 7
        with ConvZooClient(target, transport="grpc", retry=NO_RETRY, timeout=5) as client, \
                pytest.raises(UnavailableError):
            client.classify(b"\x89PNG")  # plaintext to a TLS port
    assert len(servicer.metadata) == 1
