"""Camera photos through the service (issue 13): decoded at the scale each endpoint needs,
the same answers as full decoding, a flood of large photos refused cleanly while small ones
pass, the decode backlog in the metrics, the SDK's optional shrink, and the instance layout
chosen by measurement.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from functools import cache

import httpx
import numpy as np
import pytest

from clients.client import AsyncConvZooClient, ConvZooClient
from model_store import registry, repository
from model_store.transforms import preprocess
from service.core import decoding
from service.core.config import load_config, usable_cores
from service.core.dataplane import DataPlane
from service.core.decoding import decode_image
from service.core.layout import candidate_batch_sizes, candidate_layouts
from service.core.postprocess import softmax
from service.core.requests import (
    ClassifyRequest,
    EnsembleRequest,
    MulticropRequest,
    SelectRequest,
)
from tests.integration.conftest import start_server, stop_server
from tools import photos

pytestmark = pytest.mark.integration

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@cache
def at_12mp(name: str) -> bytes:
    """The photo itself, upscaled to 12 MP (no grain: the same picture, only larger)."""
    return photos.encode(photos.at_megapixels(photos.photo(name), 12.0), "JPEG", quality=90)


@cache
def own_size(name: str) -> bytes:
    return photos.encode(photos.photo(name), "JPEG", quality=90)


def classify(http: httpx.Client, data: bytes, **params) -> dict:
    response = http.post("/classify", content=data, params=params,
                         headers={"content-type": "image/jpeg"})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_photo_keeps_its_top1_when_sent_at_12_megapixels(http):
    small, large = classify(http, own_size("coffee")), classify(http, at_12mp("coffee"))
    assert small["predictions"][0]["index"] == large["predictions"][0]["index"] == ESPRESSO
    assert {p["index"] for p in classify(http, at_12mp("chelsea"))["predictions"][:2]} \
        <= CAT_CLASSES


@pytest.mark.parametrize("name", ["chelsea", "coffee"])
def test_the_served_12mp_answer_is_the_full_decoding_answer(http, name):
    """What the model says of the photo decoded in full, as before the change."""
    import onnxruntime as ort

    spec = registry.get("efficientnet_lite0").input
    session = ort.InferenceSession(str(repository.find("efficientnet_lite0").onnx_path),
                                   providers=["CPUExecutionProvider"])
    full = softmax(session.run(None, {"input": preprocess(decode_image(at_12mp(name)),
                                                          spec)[None]})[0])[0]
    served = classify(http, at_12mp(name), model="efficientnet_lite0", top_k=5)
    best = served["predictions"][0]
    assert best["index"] == int(full.argmax())
    assert best["score"] == pytest.approx(float(full.max()), abs=0.05)
    assert len({p["index"] for p in served["predictions"]}
               & set(np.argsort(-full)[:5].tolist())) >= 4


async def test_each_endpoint_decodes_at_the_side_it_needs(monkeypatch, tmp_path):
    """The shorter side asked of the decoder: the model's resize, the crop scheme's largest
    scale, the most demanding ensemble member's, the chosen variant's."""
    asked: list[int | None] = []
    real_decode = decoding.ImageProbe.decode

    def spy(probe, min_side=None, *args):
        asked.append(min_side)
        return real_decode(probe, min_side, *args)

    monkeypatch.setattr(decoding.ImageProbe, "decode", spy)
    config = load_config(tmp_path / "none.yaml", startup_models=(),
                         batching={"instances": 1})
    plane = DataPlane(config)
    photo = photos.camera_jpeg("chelsea", 3.0)
    lite = {n: registry.get(f"efficientnet_lite{n}").input.resize for n in range(3)}
    try:
        await plane.start()
        await plane.classify(ClassifyRequest(images=(photo,), model="efficientnet_lite1"))
        await plane.multicrop(MulticropRequest(images=(photo,), model="efficientnet_lite0",
                                               crops=10))
        await plane.multicrop(MulticropRequest(images=(photo,), model="efficientnet_lite0",
                                               crops=144))
        await plane.ensemble(EnsembleRequest(images=(photo,), models=(
            "efficientnet_lite0", "efficientnet_lite2")))
        await plane.classify(ClassifyRequest(
            images=(photos.encode(photos.photo("page"), "PNG"),), model="lenet5"))
        (selected,) = await plane.select(SelectRequest(
            images=(photo,), family="efficientnet_lite", latency_budget_ms=10_000))
    finally:
        await plane.close()
    chosen = registry.get(selected.model).input.resize
    assert asked == [lite[1], lite[0], round(lite[0] * 352 / 256), lite[2],
                     registry.get("lenet5").input.resize, chosen]


def test_model_info_and_metadata_say_what_each_scheme_decodes_for(http, server):
    import grpc

    from contract._proto import grpc_predict_v2_pb2 as pb
    from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc

    sides = http.get("/models/efficientnet_lite0").json()["input"]["decode_sides"]
    assert sides == {"1": 256, "5": 256, "10": 256, "144": 352}
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        default = stub.ModelMetadata(pb.ModelMetadataRequest(name=""), timeout=30)
    assert default.name == server.config["default_model"]
    assert default.properties["decode_side.144"] == "352"


def test_the_decode_backlog_is_in_the_metrics(http):
    classify(http, own_size("chelsea"))
    text = http.get("/metrics").text
    assert 'convzoo_decode_backlog_images{lane="small"}' in text
    assert 'convzoo_decode_backlog_pixels{lane="large"}' in text
    assert 'convzoo_stage_latency_seconds_count{model="efficientnet_lite0",stage="decode_wait"}' \
        in text


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_the_sdk_shrinks_photos_for_the_model_when_asked(server, monkeypatch, transport):
    import clients.protocol

    sent: list[tuple[int, int]] = []
    real_shrink = clients.protocol.shrink_for_model

    def recording(data: bytes, min_side: int) -> bytes:
        shrunk = real_shrink(data, min_side)
        sent.append((len(data), len(shrunk)))
        return shrunk

    monkeypatch.setattr(clients.protocol, "shrink_for_model", recording)
    url = server.http_url if transport == "rest" else server.grpc_target
    photo = at_12mp("coffee")
    with ConvZooClient(url, transport=transport, resize_for_model=True) as shrinking, \
            ConvZooClient(url, transport=transport) as plain:
        assert shrinking.classify(photo).top.index == plain.classify(photo).top.index == ESPRESSO
        assert shrinking.multicrop(photo, crops=144).top.index == ESPRESSO
    assert len(sent) == 2 and all(after < before / 3 for before, after in sent)

    async def asynchronous() -> int:
        async with AsyncConvZooClient(url, transport=transport, resize_for_model=True) as c:
            return (await c.ensemble(photo, models=["efficientnet_lite0",
                                                    "efficientnet_lite1"])).top.index

    assert asyncio.run(asynchronous()) == ESPRESSO
    assert len(sent) == 3


# --- a server with small decode budgets, and the instance layout measured ----------------

FLOOD_CONFIG = {
    "default_model": "efficientnet_lite0",
    "startup_models": ["efficientnet_lite0"],
    "batching": {"instances": "auto", "preferred_batch_size": "auto"},
    # One thread for large photos and room for one 12 MP photo at a time; waits of 50 ms,
    # shorter than the queue of a flood takes to drain.
    "decode_lanes": [{"name": "small", "max_image_pixels": 2_000_000,
                      "budget_pixels": 64_000_000},
                     {"name": "large", "max_image_pixels": 40_000_000,
                      "budget_pixels": 13_000_000, "threads": 1}],
    "decode_wait_s": 0.05,
}


@pytest.fixture(scope="module")
def flood_server(tmp_path_factory):
    live = start_server(tmp_path_factory.mktemp("flood"), FLOOD_CONFIG)
    yield live
    stop_server(live)


def test_a_flood_of_large_photos_is_refused_cleanly_while_small_ones_pass(flood_server):
    large, small = photos.camera_jpeg("chelsea", 12.0), own_size("chelsea")
    url = flood_server.http_url

    def post(data: bytes) -> httpx.Response:
        return httpx.post(url + "/classify", content=data, timeout=120,
                          headers={"content-type": "image/jpeg"})

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        flood = [pool.submit(post, large) for _ in range(16)]
        time.sleep(0.3)
        thumbnails = [pool.submit(post, small) for _ in range(3)]
        ready = httpx.get(url + "/readyz", timeout=10)
        live = httpx.get(url + "/livez", timeout=10)
        answers = [f.result() for f in flood]
        small_answers = [f.result() for f in thumbnails]
    assert ready.status_code == 200 and live.status_code == 200
    assert all(r.status_code == 200 for r in small_answers), [r.text for r in small_answers]
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses, statuses
    for refused in (r for r in answers if r.status_code == 503):
        assert refused.json()["error"]["code"] == "overloaded"
        assert int(refused.headers["retry-after"]) >= 1
    metrics = httpx.get(url + "/metrics", timeout=30).text
    assert 'convzoo_decode_refused_total{lane="large"}' in metrics


def test_instances_and_batch_size_auto_are_chosen_by_measurement(flood_server):
    layout = httpx.get(flood_server.http_url + "/models/efficientnet_lite0",
                       timeout=30).json()["layout"]
    assert layout["chosen_by"] == "measurement"
    assert [(m["instances"], m["threads"]) for m in layout["measured"]] == candidate_layouts(
        usable_cores())
    assert all(m["images_per_s"] > 0 for m in layout["measured"])
    fastest = max(layout["measured"], key=lambda m: m["images_per_s"])
    assert layout["instances"] in (1, fastest["instances"])  # one stays unless beaten clearly
    batches = layout["preferred_batch"]
    assert batches["chosen_by"] == "measurement"
    assert [m["batch_size"] for m in batches["measured"]] == candidate_batch_sizes(16)
    assert all(m["images_per_s"] > 0 for m in batches["measured"])
    assert batches["size"] in candidate_batch_sizes(16) and "batches of up to" in batches["reason"]
