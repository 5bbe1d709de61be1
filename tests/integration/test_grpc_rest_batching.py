"""gRPC and REST requests reach the same core in the same process, so they share one batcher
per model: 8 + 8 concurrent requests on efficientnet_lite0 (batched with a 25 ms delay) run
in fewer, larger batches, and /metrics counts both protocols, composites under the one label
rule (the chosen variant, the configured ensemble), whichever protocol carried them.

This module runs a server of its own (only efficientnet_lite0), so that no other test's
requests mix into the counters it compares."""

from __future__ import annotations

import asyncio
import base64
import io

import grpc
import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from contract._proto import grpc_predict_v2_pb2 as pb
from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.integration.conftest import (
    DEFAULT_TEST_CONFIG,
    LiveServer,
    start_server,
    stop_server,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "efficientnet_lite0"
PER_PROTOCOL = 8


@pytest.fixture(scope="module")
def own_server(tmp_path_factory) -> LiveServer:
    config = {**DEFAULT_TEST_CONFIG, "startup_models": [MODEL]}
    live = start_server(tmp_path_factory.mktemp("server"), config)
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def own_http(own_server) -> httpx.Client:
    with httpx.Client(base_url=own_server.http_url, timeout=60) as client:
        yield client


def scrape(http: httpx.Client) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics by (name, sorted labels), summed over processes."""
    samples: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pid"))
            key = (sample.name, labels)
            samples[key] = samples.get(key, 0.0) + sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def small_cat_jpeg(cat_jpeg) -> bytes:
    """A smaller JPEG of the cat, so that 16 decodes on two cores arrive within a batch."""
    image = Image.open(io.BytesIO(cat_jpeg))
    image.thumbnail((256, 256))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


async def grpc_and_rest_at_once(server, image: bytes) -> tuple[list[int], list[int]]:
    """Batch sizes each protocol's requests report, all 16 requests sent concurrently."""
    request = pb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="IMAGE", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        image)
    body = {"image": base64.b64encode(image).decode(), "model": MODEL, "top_k": 1}
    async with grpc.aio.insecure_channel(server.grpc_target) as channel, \
            httpx.AsyncClient(base_url=server.http_url, timeout=60) as http:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        await channel.channel_ready()
        replies = await asyncio.gather(
            *(stub.ModelInfer(request, timeout=60) for _ in range(PER_PROTOCOL)),
            *(http.post("/classify", json=body) for _ in range(PER_PROTOCOL)))
    grpc_replies, rest_replies = replies[:PER_PROTOCOL], replies[PER_PROTOCOL:]
    assert all(r.status_code == 200 for r in rest_replies), rest_replies[0].text
    return ([r.parameters["timing_ms.batch_size"].int64_param for r in grpc_replies],
            [r.json()["timing_ms"]["batch_size"] for r in rest_replies])


async def test_grpc_and_rest_requests_share_batches(own_server, own_http, small_cat_jpeg):
    before = scrape(own_http)
    grpc_batches, rest_batches = await grpc_and_rest_at_once(own_server, small_cat_jpeg)
    after = scrape(own_http)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Both protocols' requests went through the core and were counted under their endpoint.
    assert delta("convzoo_requests_total", model=MODEL, endpoint="grpc_infer",
                 outcome="ok") == PER_PROTOCOL
    assert delta("convzoo_requests_total", model=MODEL, endpoint="classify",
                 outcome="ok") == PER_PROTOCOL
    # 16 images ran in fewer batches than requests: the mean batch is above one.
    images = delta("convzoo_batch_size_sum", model=MODEL)
    batches = delta("convzoo_batch_size_count", model=MODEL)
    assert images == 2 * PER_PROTOCOL
    assert 1 <= batches < 2 * PER_PROTOCOL
    assert images / batches > 1
    # Each reply says how big its batch was; requests of both protocols rode in shared ones.
    assert max(grpc_batches) > 1 and max(rest_batches) > 1


def test_oip_rest_requests_are_counted_under_their_own_endpoint(own_http, small_cat_jpeg):
    body = {"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1],
                        "data": [base64.b64encode(small_cat_jpeg).decode()]}]}
    before = scrape(own_http)
    assert own_http.post(f"/v2/models/{MODEL}/infer", json=body).status_code == 200
    after = scrape(own_http)
    labels = {"model": MODEL, "endpoint": "oip_rest_infer", "outcome": "ok"}
    assert (value(after, "convzoo_requests_total", **labels)
            - value(before, "convzoo_requests_total", **labels)) == 1


@pytest.mark.parametrize("call, label", [
    ("select", "chosen"),  # the variant that was chosen and ran
    ("ensemble", "lite-pair"),  # the configured ensemble's name
])
def test_composites_are_labelled_by_what_ran_the_same_over_every_protocol(
        own_server, own_http, small_cat_jpeg, call, label):
    from clients import ConvZooClient

    def run(client: ConvZooClient):
        if call == "select":
            return client.select(small_cat_jpeg, family="efficientnet_lite",
                                 latency_budget_ms=60_000)
        return client.ensemble(small_cat_jpeg, ensemble="lite-pair")

    endpoints = {"rest": call, "grpc": "grpc_infer"}
    for transport, target in (("rest", own_server.http_url), ("grpc", own_server.grpc_target)):
        before = scrape(own_http)
        with ConvZooClient(target, transport=transport, timeout=120) as client:
            result = run(client)
        after = scrape(own_http)
        expected = result.model if label == "chosen" else label
        assert result.model == expected
        labels = {"model": expected, "endpoint": endpoints[transport], "outcome": "ok"}
        assert (value(after, "convzoo_requests_total", **labels)
                - value(before, "convzoo_requests_total", **labels)) == 1, transport
