"""Model lifecycle: eviction under the memory budget (in-process), and a random-init model
served by a real server from a store of its own, marked as such in every response."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import pytest

from contract._proto import grpc_predict_v2_pb2 as pb
from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from service.core.config import load_config, usable_cores
from service.core.dataplane import DataPlane
from service.core.requests import ClassifyRequest
from tests.integration.conftest import ROOT, start_server, stop_server


async def test_least_recently_used_idle_model_is_evicted_under_the_memory_budget(tmp_path):
    # lite0 ~ 2 x 18 MB + 32 in the estimate, lenet5 ~ 32 MB: a 120 MB budget holds two.
    config = load_config(tmp_path / "none.yaml", default_model="efficientnet_lite0",
                         startup_models=("efficientnet_lite0",), memory_budget_mb=120)
    plane = DataPlane(config)
    try:
        await plane.start()
        await plane.engines.engine("lenet5")
        assert set(plane.engines.loaded) == {"efficientnet_lite0", "lenet5"}
        await plane.engines.engine("efficientnet_lite1")
        # lenet5 was the least recently used idle model; the default model is never evicted.
        assert set(plane.engines.loaded) == {"efficientnet_lite0", "efficientnet_lite1"}
        info = plane.model_status("lenet5").to_dict()
        assert info["loaded"] is False and info["weights"] == "pretrained"
    finally:
        await plane.close()


async def test_models_outside_the_start_up_list_load_on_first_use(tmp_path, cat_jpeg):
    config = load_config(tmp_path / "none.yaml", default_model="lenet5",
                         startup_models=("lenet5",))
    plane = DataPlane(config)
    try:
        await plane.start()
        assert set(plane.engines.loaded) == {"lenet5"} and plane.ready
        result = await plane.classify(ClassifyRequest(images=(cat_jpeg,),
                                                      model="efficientnet_lite0", top_k=3))
        assert result[0].model == "efficientnet_lite0"
        assert plane.model_status("efficientnet_lite0").to_dict()["loaded"] is True
    finally:
        await plane.close()


async def test_model_instances_divide_the_cores_and_each_serves(tmp_path, cat_jpeg):
    # That instances run batches side by side is the batcher's test (test_batcher.py).
    config = load_config(tmp_path / "none.yaml", default_model="lenet5",
                         startup_models=("lenet5",),
                         batching={"max_batch_size": 1, "max_delay_ms": 0, "instances": 2})
    plane = DataPlane(config)
    try:
        await plane.start()
        engine = plane.engines.get("lenet5")
        assert engine.batcher.instances == 2
        threads = engine.backend.session.get_session_options().intra_op_num_threads
        assert threads == config.threads_for("lenet5") == max(1, usable_cores() // 2)
        request = ClassifyRequest(images=(cat_jpeg,), model="lenet5", top_k=1)
        results = await asyncio.gather(*(plane.classify(request) for _ in range(8)))
        assert all(r[0].timing_ms["batch_size"] == 1 for r in results)
        assert len({r[0].predictions[0].index for r in results}) == 1
    finally:
        await plane.close()


@pytest.fixture(scope="module")
def random_init_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("random-store")
    env = {**os.environ, "BENTOML_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "model_store", "pull", "lenet5", "--random-init"],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    old_home = os.environ["BENTOML_HOME"]
    os.environ["BENTOML_HOME"] = str(home)
    try:
        server = start_server(tmp_path_factory.mktemp("random-server"),
                              {"default_model": "lenet5", "startup_models": ["lenet5"]},
                              check_store=False)
    finally:
        os.environ["BENTOML_HOME"] = old_home
    yield server
    stop_server(server)


def test_random_init_model_says_so_in_every_response(random_init_server, digit_pngs):
    url = random_init_server.http_url
    data = digit_pngs[0][0]
    single = httpx.post(url + "/classify", content=data, headers={"content-type": "image/png"})
    assert single.status_code == 200
    assert single.json()["weights"] == "random-init"
    assert "random-init" in single.json()["warning"]
    batch = httpx.post(url + "/classify_batch",
                       files=[("images", ("a.png", data, "image/png"))] * 2).json()
    assert batch["weights"] == "random-init"
    assert all(r["weights"] == "random-init" and "warning" in r for r in batch["results"])
    listing = {m["name"]: m for m in httpx.get(url + "/models").json()["models"]}
    assert listing["lenet5"]["weights"] == "random-init"


@pytest.fixture
def corrupt_store(tmp_path):
    """A store of its own holding a real lenet5 whose ONNX file was then damaged."""
    home = tmp_path / "store"
    env = {**os.environ, "BENTOML_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "model_store", "pull", "lenet5", "--random-init"],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    onnx = next(home.glob("models/lenet5/*/model.onnx"))
    onnx.write_bytes(onnx.read_bytes()[:-100] + b"\0" * 100)
    return home


def test_corrupt_stored_model_is_refused_and_reported_while_others_serve(
        corrupt_store, tmp_path, cat_jpeg):
    home = os.environ["BENTOML_HOME"]
    # One server, two models: a healthy efficientnet_lite0 copied from the real store, and
    # the damaged lenet5.
    healthy = Path(home) / "models" / "efficientnet_lite0"
    assert healthy.exists(), "efficientnet_lite0 is not in the store: run `make models`"
    shutil.copytree(healthy, corrupt_store / "models" / "efficientnet_lite0")
    os.environ["BENTOML_HOME"] = str(corrupt_store)
    try:
        server = start_server(tmp_path, {"default_model": "efficientnet_lite0",
                                         "startup_models": ["efficientnet_lite0", "lenet5"]},
                              check_store=False, wait_ready=False)
    finally:
        os.environ["BENTOML_HOME"] = home
    try:
        # the server comes up, but not ready: a configured model failed to load
        assert httpx.get(server.http_url + "/readyz").status_code == 503
        info = httpx.get(server.http_url + "/models/lenet5").json()
        assert info["loaded"] is False and "corrupt" in info["load_error"]
        refused = httpx.post(server.http_url + "/classify?model=lenet5", content=cat_jpeg,
                             headers={"content-type": "image/jpeg"})
        assert refused.status_code == 503 and "corrupt" in refused.json()["error"]["message"]
        served = httpx.post(server.http_url + "/classify", content=cat_jpeg,
                            headers={"content-type": "image/jpeg"})
        assert served.status_code == 200
        # gRPC says the same: not ready, lenet5 not ready, efficientnet_lite0 ready and serving
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert not stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
            ready = {name: stub.ModelReady(pb.ModelReadyRequest(name=name), timeout=10).ready
                     for name in ("lenet5", "efficientnet_lite0")}
            assert ready == {"lenet5": False, "efficientnet_lite0": True}
            request = pb.ModelInferRequest(model_name="efficientnet_lite0")
            request.inputs.add(name="IMAGE", datatype="BYTES", shape=[1]
                               ).contents.bytes_contents.append(cat_jpeg)
            assert stub.ModelInfer(request, timeout=30).model_name == "efficientnet_lite0"
            request.model_name = "lenet5"
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(request, timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "corrupt" in info.value.details()
    finally:
        stop_server(server)
