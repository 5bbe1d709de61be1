"""`/embed` and the `features` output on a real server, with real photos and EfficientNet-Lite0's
real weights: over REST, OIP REST (JSON and binary data) and gRPC (typed and raw contents),
the same vectors the stored graph gives through ONNX Runtime directly, L2-normalised by
default and not when asked; classify and embed requests sharing the model's batches (the
batch-size metric); a model stored before the features output refused with the re-import
message, and bad `normalize` values refused with a 400.

The photos are sent as PNG, so the server's pixels are exactly the ones preprocessed here
(a JPEG could be decoded at a reduced scale, docs/accuracy.md). This module runs a server of
its own, so that no other test's requests mix into the batch counters it compares.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import struct
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image

from contract._proto import grpc_predict_v2_pb2 as pb
from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from model_store import registry, repository
from model_store.transforms import preprocess
from tests.fixtures.store_copy import copy_models
from tests.integration.conftest import DEFAULT_TEST_CONFIG, LiveServer, start_server, stop_server
from tests.integration.test_grpc_rest_batching import scrape, value
from tools import photos

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "efficientnet_lite0"
DIM = 1280  # EfficientNet-Lite0's pooled channels before its classifier
OLD = "efficientnet_lite1"  # stored again below as graphs were before the features output
PHOTOS = ("chelsea", "coffee")
CONCURRENT = 6  # classify and embed requests of each kind sent at once


def png(name: str) -> bytes:
    return photos.encode(photos.photo(name), "PNG")


@pytest.fixture(scope="module")
def store_without_features(tmp_path_factory) -> Path:
    """A BentoML home whose store has Lite0 as it is, and Lite1 as stored before the features
    output existed: its record without `outputs`/`features_dim`."""
    home = tmp_path_factory.mktemp("embed-store") / "bentoml"
    record_path = copy_models(home, MODEL, OLD)[OLD] / "convzoo.json"
    record = json.loads(record_path.read_text())
    record.pop("outputs", None)
    record.pop("features_dim", None)
    record_path.write_text(json.dumps(record))
    return home


@pytest.fixture(scope="module")
def embed_server(tmp_path_factory, store_without_features, monkeypatch_module) -> LiveServer:
    monkeypatch_module.setenv("BENTOML_HOME", str(store_without_features))
    # A batch of exactly the classify and embed requests sent at once, and a long delay that
    # waits for all of them (single requests wait it out too: 1.5 s each).
    config = {**DEFAULT_TEST_CONFIG, "startup_models": [MODEL], "ensembles": {},
              "batching": {"max_batch_size": 2 * CONCURRENT, "max_delay_ms": 1500,
                           "max_queue": 256, "instances": 1}}
    live = start_server(tmp_path_factory.mktemp("server"), config, check_store=False)
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def http(embed_server) -> httpx.Client:
    with httpx.Client(base_url=embed_server.http_url, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def direct() -> np.ndarray:
    """The photos' features as the stored graph gives them through ONNX Runtime here."""
    import onnxruntime as ort

    stored = repository.find(MODEL)
    session = ort.InferenceSession(str(stored.onnx_path), providers=["CPUExecutionProvider"])
    batch = np.stack([preprocess(Image.open(photos_file), registry.get(MODEL).input)
                                        for photos_file in map(_png_file, PHOTOS)])
    names = [output.name for output in session.get_outputs()]
    assert names == ["logits", "features"]
    return session.run(["features"], {"input": batch})[0]


def _png_file(name: str) -> io.BytesIO:
    return io.BytesIO(png(name))


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_rest_embed_gives_the_graphs_features_normalised_by_default(http, direct):
    images = [base64.b64encode(png(name)).decode() for name in PHOTOS]
    body = http.post("/embed", json={"images": images, "model": MODEL}).json()
    assert (body["model"], body["weights"], body["dim"], body["normalized"]) == (
        MODEL, "pretrained", DIM, True)
    vectors = np.array(body["embeddings"], dtype=np.float32)
    assert vectors.shape == (2, DIM)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors, unit(direct), rtol=1e-4, atol=1e-5)
    assert {"decode", "preprocess", "queue", "infer", "postprocess", "total"} <= set(
        body["timing_ms"])
    # normalize=false (a form field here): the graph's own values, whose norms are not 1.
    raw = http.post("/embed", data={"model": MODEL, "normalize": "false"},
                    files={"image": ("cat.png", png("chelsea"), "image/png")}).json()
    assert raw["normalized"] is False and raw["dim"] == DIM
    np.testing.assert_allclose(raw["embeddings"], direct[:1], rtol=1e-4, atol=1e-5)
    assert abs(np.linalg.norm(raw["embeddings"][0]) - 1.0) > 0.1


@pytest.mark.parametrize("normalize", ["maybe", 2, [True], "tru"])
def test_bad_normalize_values_are_400(http, normalize):
    image = base64.b64encode(png("chelsea")).decode()
    reply = http.post("/embed", json={"image": image, "normalize": normalize})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_argument" and "normalize" in error["message"]


def test_a_model_stored_before_the_features_output_is_refused_with_the_reimport_command(http):
    image = base64.b64encode(png("chelsea")).decode()
    reply = http.post("/embed", json={"image": image, "model": OLD})
    assert reply.status_code == 409, reply.text
    error = reply.json()["error"]
    assert error["code"] == "features_unavailable"
    assert f"python -m model_store pull {OLD} --force" in error["message"]
    # Classification of that model still works: only the features output is missing.
    assert http.post("/classify", json={"image": image, "model": OLD}).status_code == 200


def test_oip_rest_features_output_as_json_and_as_binary_data(http, direct):
    image = base64.b64encode(png("chelsea")).decode()
    inputs = [{"name": "IMAGE", "datatype": "BYTES", "shape": [1], "data": [image]}]
    body = http.post(f"/v2/models/{MODEL}/infer", json={
        "inputs": inputs, "outputs": [{"name": "features"}],
        "parameters": {"normalize": False}}).json()
    (output,) = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("features", "FP32",
                                                                     [1, DIM])
    np.testing.assert_allclose(output["data"], direct[0], rtol=1e-4, atol=1e-5)
    assert body["parameters"]["normalized"] is False
    reply = http.post(f"/v2/models/{MODEL}/infer", json={
        "inputs": inputs, "outputs": [{"name": "features",
                                       "parameters": {"binary_data": True}}]})
    header_size = int(reply.headers["inference-header-content-length"])
    header = json.loads(reply.content[:header_size])
    (output,) = header["outputs"]
    assert output["parameters"]["binary_data_size"] == DIM * 4
    vector = np.frombuffer(reply.content[header_size:], dtype="<f4")
    np.testing.assert_allclose(vector, unit(direct)[0], rtol=1e-4, atol=1e-5)
    bad = http.post(f"/v2/models/{MODEL}/infer", json={
        "inputs": inputs, "outputs": [{"name": "features"}], "parameters": {"normalize": "x"}})
    assert bad.status_code == 400 and "normalize" in bad.json()["error"]
    metadata = http.get(f"/v2/models/{MODEL}").json()
    assert {"name": "features", "datatype": "FP32", "shape": [-1, DIM]} in metadata["outputs"]
    assert "features" not in [o["name"] for o in http.get(f"/v2/models/{OLD}").json()["outputs"]]


def test_grpc_features_output_typed_and_raw(embed_server, direct):
    with grpc.insecure_channel(embed_server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        typed = pb.ModelInferRequest(model_name=MODEL)
        typed.inputs.add(name="IMAGE", datatype="BYTES", shape=[2]).contents.bytes_contents.extend(
            [png(name) for name in PHOTOS])
        typed.outputs.add(name="features")
        reply = stub.ModelInfer(typed, timeout=120)
        (output,) = reply.outputs
        assert (output.name, output.datatype, list(output.shape)) == ("features", "FP32",
                                                                      [2, DIM])
        vectors = np.array(output.contents.fp32_contents, dtype=np.float32).reshape(2, DIM)
        np.testing.assert_allclose(vectors, unit(direct), rtol=1e-4, atol=1e-5)

        raw = pb.ModelInferRequest(model_name=MODEL)
        raw.inputs.add(name="IMAGE", datatype="BYTES", shape=[1])
        image = png("coffee")
        raw.raw_input_contents.append(struct.pack("<I", len(image)) + image)
        raw.outputs.add(name="features")
        raw.parameters["normalize"].bool_param = False
        reply = stub.ModelInfer(raw, timeout=120)
        vector = np.frombuffer(reply.raw_output_contents[0], dtype="<f4")
        np.testing.assert_allclose(vector, direct[1], rtol=1e-4, atol=1e-5)

        with pytest.raises(grpc.RpcError) as refused:
            old = pb.ModelInferRequest(model_name=OLD)
            old.inputs.add(name="IMAGE", datatype="BYTES", shape=[1]).contents.bytes_contents\
                .append(image)
            old.outputs.add(name="features")
            stub.ModelInfer(old, timeout=120)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"pull {OLD} --force" in refused.value.details()
        metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL), timeout=30)
        assert ("features", "FP32", [-1, DIM]) in [
            (o.name, o.datatype, list(o.shape)) for o in metadata.outputs]


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_the_sdk_embeds_sync_and_async_over_both_transports(embed_server, direct, transport):
    from clients import AsyncConvZooClient, ConvZooClient

    target = embed_server.http_url if transport == "rest" else embed_server.grpc_target
    images = [png(name) for name in PHOTOS]
    with ConvZooClient(target, transport=transport, timeout=120) as client:
        result = client.embed(images, model=MODEL)
        raw = client.embed(images[0], model=MODEL, normalize=False)

    async def embed_async():
        async with AsyncConvZooClient(target, transport=transport, timeout=120) as client:
            return await client.embed(images, model=MODEL)

    async_result = asyncio.run(embed_async())
    for got in (result, async_result):
        assert (got.model, got.weights, got.dim, got.normalized) == (MODEL, "pretrained", DIM,
                                                                     True)
        np.testing.assert_allclose(got.array(), unit(direct), rtol=1e-4, atol=1e-5)
    assert raw.normalized is False and len(raw.embeddings) == 1
    np.testing.assert_allclose(raw.embeddings[0], direct[0], rtol=1e-4, atol=1e-5)


async def test_classify_and_embed_requests_share_batches(embed_server, http):
    """CONCURRENT classify and CONCURRENT embed requests sent at once, within the batcher's
    1.5 s delay: they run in fewer batches than requests, and a batch held more images than
    either kind sent, so both kinds rode in it (one run giving both outputs)."""
    image = base64.b64encode(photos.jpeg("chelsea", shorter_side=256)).decode()
    before = scrape(http)
    async with httpx.AsyncClient(base_url=embed_server.http_url, timeout=120) as client:
        replies = await asyncio.gather(
            *(client.post("/classify", json={"image": image, "model": MODEL})
              for _ in range(CONCURRENT)),
            *(client.post("/embed", json={"image": image, "model": MODEL})
              for _ in range(CONCURRENT)))
    after = scrape(http)
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    for endpoint in ("classify", "embed"):
        assert delta("convzoo_requests_total", model=MODEL, endpoint=endpoint,
                     outcome="ok") == CONCURRENT
        assert delta("convzoo_request_latency_seconds_count", model=MODEL,
                     endpoint=endpoint) == CONCURRENT
    images = delta("convzoo_batch_size_sum", model=MODEL)
    batches = delta("convzoo_batch_size_count", model=MODEL)
    assert images == 2 * CONCURRENT and 1 <= batches < 2 * CONCURRENT
    classify_sizes = [r.json()["timing_ms"]["batch_size"] for r in replies[:CONCURRENT]]
    embed_sizes = [r.json()["timing_ms"]["batch_size"] for r in replies[CONCURRENT:]]
    # A batch larger than the requests of one kind sent at once held both kinds, and requests
    # of each kind were in it.
    shared = max(classify_sizes + embed_sizes)
    assert shared > CONCURRENT
    assert shared in classify_sizes and shared in embed_sizes


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_the_cli_embeds_files(embed_server, direct, tmp_path, transport):
    from clients.cli import main

    files = []
    for name in PHOTOS:
        files.append(tmp_path / f"{name}.png")
        files[-1].write_bytes(png(name))
    target = (["--url", embed_server.http_url] if transport == "rest"
              else ["--grpc", "--url", embed_server.grpc_target])
    out, err = io.StringIO(), io.StringIO()
    assert main(["embed", *map(str, files), "--model", MODEL, "--json", *target],
                out=out, err=err) == 0, err.getvalue()
    body = json.loads(out.getvalue())
    assert body["images"] == [str(f) for f in files] and body["dim"] == DIM
    np.testing.assert_allclose(body["embeddings"], unit(direct), rtol=1e-4, atol=1e-5)
    out = io.StringIO()
    assert main(["embed", str(files[0]), "--model", MODEL, "--no-normalize", *target],
                out=out, err=err) == 0
    table = out.getvalue()
    assert f"{MODEL} (pretrained): 1 image(s), dim {DIM}, not normalised" in table
    # Printed to four decimals: compared as a number, since the server's batch may round a
    # float differently from the direct run and tip the fourth decimal.
    printed = re.search(rf"^  {re.escape(str(files[0]))}: norm ([0-9.]+) ", table, re.M)
    assert printed, table
    assert float(printed[1]) == pytest.approx(np.linalg.norm(direct[0]), abs=2e-4)
