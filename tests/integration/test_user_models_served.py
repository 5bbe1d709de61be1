"""Fine-tuned models served for real: `python -m model_store finetune` on a small folder of
real photos (crops of three scikit-image photos, one class each), into the store of a running
server. One model stored before the server starts is listed at start-up (REST's `GET
/models`, OIP's repository index and metadata); one stored while it runs is served on its first
request, with no restart, over REST and gRPC, its predictions named by its own classes; the
two (same classes) make an ensemble; `/embed` gives the backbone's features.
"""

from __future__ import annotations

import base64
from pathlib import Path

import grpc
import httpx
import pytest

from contract._proto import grpc_predict_v2_pb2 as pb
from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.fixtures.store_copy import copy_models
from tests.integration.conftest import DEFAULT_TEST_CONFIG, LiveServer, start_server, stop_server
from tests.integration.test_finetune import write_photos
from tests.integration.test_model_store_cli import run_cli
from tools import photos

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BACKBONE = "efficientnet_lite0"
CLASSES = ["cat", "coffee", "rocket"]  # test_finetune.PHOTOS: one scikit-image photo each
BEFORE, AFTER = "photos-before", "photos-after"


def finetune(home: Path, name: str, data: Path, seed: str) -> None:
    run_cli("finetune", name, "--backbone", BACKBONE, "--data", str(data), "--holdout", "0.25",
            "--seed", seed, "--no-progress", home=home)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("user-models") / "bentoml"
    copy_models(home, BACKBONE)
    return home


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_photos(tmp_path_factory.mktemp("photos") / "data")


@pytest.fixture(scope="module")
def running(tmp_path_factory, home, data, monkeypatch_module) -> LiveServer:
    """A server on `home`'s store, started after BEFORE was fine-tuned into it."""
    finetune(home, BEFORE, data, "0")
    monkeypatch_module.setenv("BENTOML_HOME", str(home))
    config = {**DEFAULT_TEST_CONFIG, "startup_models": [BACKBONE], "ensembles": {}}
    live = start_server(tmp_path_factory.mktemp("server"), config, check_store=False)
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def http(running) -> httpx.Client:
    with httpx.Client(base_url=running.http_url, timeout=120) as client:
        yield client


def jpeg64(name: str) -> str:
    return base64.b64encode(photos.jpeg(name)).decode()


def test_a_model_stored_before_the_start_is_listed_at_start_up(http):
    models = {m["name"]: m for m in http.get("/models").json()["models"]}
    listed = models[BEFORE]
    assert (listed["weights"], listed["classes"], listed["backbone"]) == (
        "fine-tuned", CLASSES, BACKBONE)
    assert listed["family"] == models[BACKBONE]["family"]
    assert listed["input"] == models[BACKBONE]["input"]  # the backbone's input contract
    assert listed["num_classes"] == 3 and not listed["loaded"]
    index = {m["name"]: m for m in http.post("/v2/repository/index", json={}).json()}
    assert index[BEFORE]["reason"] == "not loaded; loads on first request"
    metadata = http.get(f"/v2/models/{BEFORE}").json()
    assert metadata["properties"]["weights"] == "fine-tuned"
    assert {"name": "features", "datatype": "FP32", "shape": [-1, 1280]} in metadata["outputs"]
    assert AFTER not in models


def test_a_model_stored_while_the_server_runs_is_served_on_first_request(
        running, http, home, data):
    assert http.post("/classify", json={"image": jpeg64("chelsea"), "model": AFTER}
                     ).status_code == 404  # not fine-tuned yet
    finetune(home, AFTER, data, "1")
    for photo, label in (("chelsea", "cat"), ("coffee", "coffee")):
        body = http.post("/classify", json={"image": jpeg64(photo), "model": AFTER,
                                            "top_k": 3}).json()
        assert body["model"] == AFTER and body["weights"] == "fine-tuned", body
        assert sorted(p["label"] for p in body["predictions"]) == CLASSES
        assert body["predictions"][0]["label"] == label
    assert AFTER in [m["name"] for m in http.get("/models").json()["models"]]

    with grpc.insecure_channel(running.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name=AFTER)
        request.inputs.add(name="IMAGE", datatype="BYTES", shape=[1]).contents.bytes_contents\
            .append(photos.jpeg("rocket"))
        reply = stub.ModelInfer(request, timeout=120)
        labels = {o.name: o for o in reply.outputs}["LABELS"].contents.bytes_contents
        assert labels[0] == b"rocket" and sorted(labels) == [c.encode() for c in CLASSES]
        assert reply.parameters["weights"].string_param == "fine-tuned"


def test_user_models_with_the_same_classes_ensemble_and_embed(running, http):
    # After the previous test, both are in the store; AFTER may be new to this server only.
    body = http.post("/ensemble", json={"image": jpeg64("chelsea"),
                                        "models": [BEFORE, AFTER]}).json()
    assert body["models"] == [BEFORE, AFTER] and body["predictions"][0]["label"] == "cat"
    mixed = http.post("/ensemble", json={"image": jpeg64("chelsea"),
                                         "models": [BEFORE, BACKBONE]})
    assert mixed.status_code == 400, mixed.text
    embedded = http.post("/embed", json={"image": jpeg64("chelsea"), "model": BEFORE}).json()
    backbone = http.post("/embed", json={"image": jpeg64("chelsea"), "model": BACKBONE}).json()
    assert embedded["dim"] == backbone["dim"] == 1280
    # The backbone's features, frozen under the head: the same vector.
    assert embedded["embeddings"][0] == pytest.approx(backbone["embeddings"][0], abs=1e-4)
    metrics = http.get("/metrics").text
    assert f'model="{AFTER}"' in metrics  # labelled by the user model's name, not "unknown"
