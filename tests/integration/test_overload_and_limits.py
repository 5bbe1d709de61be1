"""Load shedding, deadlines and body limits on a live server of the module's own.

EfficientNet-Lite0 runs one image at a time behind a queue of two, so that a burst of
concurrent REST and gRPC requests overflows it; LeNet-5 waits 200 ms for a fuller batch, so
that a request with a shorter deadline is still queued when the deadline passes. Each request
must end as a result or an explicit refusal (503 + Retry-After / RESOURCE_EXHAUSTED + retry-after,
504 / DEADLINE_EXCEEDED), and the service's own counters must agree: every refusal counted as
shed, and the model run for exactly the accepted images.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from urllib.parse import urlsplit

import grpc
import httpx
import pytest

from contract._proto import grpc_predict_v2_pb2 as pb
from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.integration.conftest import start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BODY_LIMIT = 200_000  # bytes; the cat photo is about 50 kB
LIMITS_CONFIG = {
    "default_model": "efficientnet_lite0",
    "startup_models": ["efficientnet_lite0", "lenet5"],
    "batching": {"max_batch_size": 1, "max_delay_ms": 0, "max_queue": 2, "instances": 1},
    "per_model_batching": {"lenet5": {"max_batch_size": 64, "max_delay_ms": 200,
                                      "max_queue": 256}},
    "max_body_bytes": BODY_LIMIT,
}
JPEG = {"content-type": "image/jpeg"}


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("limits"), LIMITS_CONFIG)
    yield server
    stop_server(server)


def counter(http_url: str, name: str, model: str) -> float:
    """A ConvZoo counter's value for one model, from /metrics."""
    lines = httpx.get(http_url + "/metrics", timeout=10).text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines
               if line.startswith(name + "{") and f'model="{model}"' in line)


def infer_request(model: str, image: bytes) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="IMAGE", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        image)
    return request


async def burst(server, image: bytes, rest_requests: int, grpc_requests: int):
    """All requests at once; REST responses, and gRPC (status name, trailing metadata)."""
    limits = httpx.Limits(max_connections=rest_requests)
    async with (httpx.AsyncClient(base_url=server.http_url, timeout=60, limits=limits) as client,
                grpc.aio.insecure_channel(server.grpc_target) as channel):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        async def over_grpc() -> tuple[str, dict]:
            try:
                await stub.ModelInfer(infer_request("efficientnet_lite0", image), timeout=60)
                return "OK", {}
            except grpc.aio.AioRpcError as error:
                return error.code().name, dict(error.trailing_metadata() or ())

        rest = [client.post("/classify", content=image, headers=JPEG)
                for _ in range(rest_requests)]
        calls = [over_grpc() for _ in range(grpc_requests)]
        results = await asyncio.gather(*rest, *calls)
    return results[:rest_requests], results[rest_requests:]


def test_a_burst_is_served_or_shed_with_retry_after_and_nothing_is_lost(limited, cat_jpeg):
    url = limited.http_url
    shed_before = counter(url, "convzoo_shed_total", "efficientnet_lite0")
    run_before = counter(url, "convzoo_images_total", "efficientnet_lite0")
    rest, over_grpc = asyncio.run(burst(limited, cat_jpeg, rest_requests=48, grpc_requests=16))

    statuses = [r.status_code for r in rest]
    assert set(statuses) <= {200, 503}, statuses
    for response in rest:
        if response.status_code == 503:
            assert response.json()["error"]["code"] == "overloaded"
            assert int(response.headers["retry-after"]) >= 1
    codes = [code for code, _ in over_grpc]
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
    for code, trailing in over_grpc:
        if code == "RESOURCE_EXHAUSTED":
            assert int(trailing["retry-after"]) >= 1
    served = statuses.count(200) + codes.count("OK")
    refused = statuses.count(503) + codes.count("RESOURCE_EXHAUSTED")
    assert served >= 1 and refused >= 1, (statuses, codes)
    # `pytest -s` shows the figures that docs/reliability.md reports
    print(f"\nburst of {len(rest)} REST + {len(over_grpc)} gRPC: REST {statuses.count(200)} "
          f"served / {statuses.count(503)} shed, gRPC {codes.count('OK')} served / "
          f"{codes.count('RESOURCE_EXHAUSTED')} shed")
    # Every refusal was counted as shed, and the model ran exactly the accepted images.
    assert counter(url, "convzoo_shed_total", "efficientnet_lite0") - shed_before == refused
    assert counter(url, "convzoo_images_total", "efficientnet_lite0") - run_before == served

    assert httpx.get(url + "/readyz").status_code == 200
    assert httpx.post(url + "/classify", content=cat_jpeg, headers=JPEG,
                      timeout=30).status_code == 200


def test_a_request_queued_past_its_deadline_is_504_and_never_runs(limited, cat_jpeg):
    url = limited.http_url
    before = counter(url, "convzoo_images_total", "lenet5")
    late = httpx.post(url + "/classify?model=lenet5&timeout_s=0.05", content=cat_jpeg,
                      headers=JPEG, timeout=30)
    assert late.status_code == 504, late.text
    assert late.json()["error"]["code"] == "deadline_exceeded"
    time.sleep(0.5)  # had it been queued to run, its 200 ms batch would have run by now
    assert counter(url, "convzoo_images_total", "lenet5") == before
    # the same request with time to wait for its batch is served
    assert httpx.post(url + "/classify?model=lenet5&timeout_s=10", content=cat_jpeg,
                      headers=JPEG, timeout=30).status_code == 200
    assert counter(url, "convzoo_images_total", "lenet5") == before + 1


def test_a_grpc_deadline_shorter_than_the_queue_wait_never_runs(limited, cat_jpeg):
    url = limited.http_url
    before = counter(url, "convzoo_images_total", "lenet5")
    with grpc.insecure_channel(limited.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(infer_request("lenet5", cat_jpeg), timeout=0.05)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(0.5)
        assert counter(url, "convzoo_images_total", "lenet5") == before
        assert stub.ModelInfer(infer_request("lenet5", cat_jpeg), timeout=10).outputs


def chunks(data: bytes, size: int = 16_384):
    """A body without Content-Length: httpx sends a generator chunked."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


def multipart(image: bytes) -> tuple[bytes, str]:
    boundary = "convzoo-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() + image + (
        f"\r\n--{boundary}--\r\n").encode()
    return body, f"multipart/form-data; boundary={boundary}"


def oip_infer(image: bytes) -> bytes:
    return json.dumps({"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1],
                                   "data": [base64.b64encode(image).decode()]}]}).encode()


def test_bodies_over_the_limit_are_413_with_or_without_content_length(limited):
    too_big = bytes(BODY_LIMIT + 60_000)
    form, form_type = multipart(too_big)
    cases = [
        ("/classify", too_big, "image/jpeg"),
        ("/classify", form, form_type),
        ("/classify", json.dumps({"image": base64.b64encode(too_big).decode()}).encode(),
         "application/json"),
        ("/v2/models/lenet5/infer", oip_infer(too_big), "application/json"),
    ]
    with httpx.Client(base_url=limited.http_url, timeout=30) as client:
        for path, body, content_type in cases:
            for content in (body, chunks(body)):
                response = client.post(path, content=content,
                                       headers={"content-type": content_type})
                assert response.status_code == 413, (path, content_type, response.text)
                chunked = not isinstance(content, bytes)
                assert ("content-length" in response.request.headers) != chunked
                error = response.json()
                code = error["code"] if path.startswith("/v2") else error["error"]["code"]
                assert code == "payload_too_large"
        assert client.get("/readyz").status_code == 200


def test_an_endless_chunked_body_is_refused_as_soon_as_it_passes_the_limit(limited):
    """The body never ends (no last chunk): the answer must come from counting, not from a
    body read to its end."""
    address = urlsplit(limited.http_url)
    chunk = b"%x\r\n" % 16_384 + bytes(16_384) + b"\r\n"
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(b"POST /classify HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(BODY_LIMIT // 16_384 + 2):
            sock.sendall(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65_536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_chunked_bodies_within_the_limit_are_served(limited, cat_jpeg):
    form, form_type = multipart(cat_jpeg)
    with httpx.Client(base_url=limited.http_url, timeout=30) as client:
        for path, body, content_type in [("/classify", cat_jpeg, "image/jpeg"),
                                         ("/classify", form, form_type),
                                         ("/v2/models/lenet5/infer", oip_infer(cat_jpeg),
                                          "application/json")]:
            response = client.post(path, content=chunks(body),
                                   headers={"content-type": content_type})
            assert response.status_code == 200, (path, response.text)
