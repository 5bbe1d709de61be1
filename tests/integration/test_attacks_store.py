"""A damaged model store and a model file that blocks on read (issue 14, items 6 and 8), on a
real server with a store of its own: LeNet-5 healthy (loaded on first use), EfficientNet-Lite0
whose model.onnx is a FIFO nobody writes (a network disk that stopped answering),
EfficientNet-Lite1 with a damaged model.yaml, EfficientNet-Lite2 with a damaged convzoo.json,
and later a store folder removed under the running server. The listings answer 200 with the
broken entries marked, no answer shows a filesystem path, the hung load times out while other
models load, and the server still stops on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import grpc
import httpx
import pytest

from contract._proto import grpc_predict_v2_pb2 as pb
from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.integration.conftest import start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOAD_TIMEOUT_S = 4
STORE_STATUS_TTL_S = 5  # service.core.inference re-reads the store at most this often


def copy_entry(source: Path, target: Path, name: str, files: tuple[str, ...]) -> Path:
    """The latest version of `name`: its pointer and the named files (others linked)."""
    version = (source / name / "latest").read_text().strip()
    (target / name / version).mkdir(parents=True)
    shutil.copy(source / name / "latest", target / name / "latest")
    for path in (source / name / version).iterdir():
        destination = target / name / version / path.name
        if path.name in files:
            shutil.copy(path, destination)
        else:
            destination.symlink_to(path.resolve())
    return target / name / version


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    source = Path(os.environ["BENTOML_HOME"]).resolve() / "models"
    root = tmp_path_factory.mktemp("damaged-store")
    models = root / "models"
    copy_entry(source, models, "lenet5", ())
    hung = copy_entry(source, models, "efficientnet_lite0", ("model.yaml", "convzoo.json"))
    (hung / "model.onnx").unlink()
    os.mkfifo(hung / "model.onnx")
    yaml_broken = copy_entry(source, models, "efficientnet_lite1", ("model.yaml",))
    with open(yaml_broken / "model.yaml", "a") as file:
        file.write("labels: [unclosed\n")
    json_broken = copy_entry(source, models, "efficientnet_lite2", ("convzoo.json",))
    (json_broken / "convzoo.json").write_text('{"name": "efficientnet_lite2", "weights": ')
    yield root, hung / "model.onnx"


@pytest.fixture(scope="module")
def server(store, tmp_path_factory, request):
    root, fifo = store
    saved = os.environ["BENTOML_HOME"]
    os.environ["BENTOML_HOME"] = str(root)  # start_server links the server's home to it
    try:
        live = start_server(tmp_path_factory.mktemp("store-server"), {
            "default_model": "lenet5", "startup_models": [],
            "model_load_timeout_s": LOAD_TIMEOUT_S}, check_store=False)
    finally:
        os.environ["BENTOML_HOME"] = saved
    yield live
    unblock(fifo)
    stop_server(live)


def unblock(fifo: Path) -> None:
    """Lets a load blocked on the FIFO go on (it then finds a corrupt file)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # fails with no reader
        os.write(descriptor, b"not onnx")
        os.close(descriptor)


def no_paths(text: str, store_root: Path) -> None:
    assert str(store_root) not in text and "/tmp" not in text and "bentoml-home" not in text


def test_listings_mark_broken_entries_and_keep_the_others(server, store):
    root, _ = store
    listing = httpx.get(server.http_url + "/models", timeout=30)
    assert listing.status_code == 200
    no_paths(listing.text, root)
    models = {m["name"]: m for m in listing.json()["models"]}
    assert models["lenet5"]["weights"] == "pretrained" and models["lenet5"]["store_error"] is None
    assert models["efficientnet_lite1"]["weights"] == "broken"
    assert "model.yaml is not valid YAML" in models["efficientnet_lite1"]["store_error"]
    assert models["efficientnet_lite2"]["weights"] == "broken"
    assert "convzoo.json is not valid JSON" in models["efficientnet_lite2"]["store_error"]
    assert models["mobilenet_v1_1.0_224"]["weights"] == "missing"
    one = httpx.get(server.http_url + "/models/efficientnet_lite1", timeout=30)
    assert one.status_code == 200 and one.json()["weights"] == "broken"
    index = httpx.post(server.http_url + "/v2/repository/index", json={}, timeout=30).json()
    reasons = {m["name"]: (m["state"], m["reason"]) for m in index}
    assert reasons["efficientnet_lite2"][0] == "UNAVAILABLE"
    assert "convzoo.json" in reasons["efficientnet_lite2"][1]
    with grpc.insecure_channel(server.grpc_target) as channel:
        meta = pb_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(
            pb.ModelMetadataRequest(name="efficientnet_lite1"), timeout=30)
    assert meta.properties["weights"] == "broken"


def test_requests_for_a_broken_entry_get_503_without_a_path(server, store, digit_pngs):
    root, _ = store
    for model in ("efficientnet_lite1", "efficientnet_lite2"):
        response = httpx.post(server.http_url + "/classify", params={"model": model},
                              content=digit_pngs[0][0], headers={"content-type": "image/png"},
                              timeout=60)
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "not_ready" and "re-import it" in error["message"]
        no_paths(response.text, root)


def test_a_hung_load_times_out_while_another_model_loads(server, store, digit_pngs):
    root, fifo = store
    results: dict[str, tuple[int, float, str]] = {}

    def classify(model: str) -> None:
        started = time.monotonic()
        response = httpx.post(server.http_url + "/classify", params={"model": model},
                              content=digit_pngs[0][0], headers={"content-type": "image/png"},
                              timeout=120)
        results[model] = (response.status_code, time.monotonic() - started, response.text)

    hung = threading.Thread(target=classify, args=("efficientnet_lite0",))
    hung.start()
    time.sleep(0.5)  # the hung load has started: lenet5 loads beside it, not behind it
    classify("lenet5")
    hung.join(60)
    status, seconds, text = results["lenet5"]
    assert status == 200 and seconds < LOAD_TIMEOUT_S, (status, seconds)
    status, seconds, text = results["efficientnet_lite0"]
    assert status == 503 and f"did not load within {LOAD_TIMEOUT_S} s" in text, text
    assert LOAD_TIMEOUT_S - 0.5 < seconds < LOAD_TIMEOUT_S + 20
    no_paths(text, root)
    # While its thread is still blocked, the model is refused at once (no second thread).
    started = time.monotonic()
    classify("efficientnet_lite0")
    assert results["efficientnet_lite0"][0] == 503
    assert "still loading" in results["efficientnet_lite0"][2]
    assert time.monotonic() - started < 2
    # The disk answers again: the blocked load ends (with a file that is not the one recorded
    # at import; its result is dropped), and the next request starts a new load, which blocks
    # on the FIFO again and times out again.
    unblock(fifo)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        classify("efficientnet_lite0")
        if "still loading" not in results["efficientnet_lite0"][2]:
            break
        time.sleep(0.5)
    status, seconds, text = results["efficientnet_lite0"]
    assert status == 503 and "did not load within" in text and seconds > LOAD_TIMEOUT_S - 0.5


def test_a_store_folder_removed_under_the_server_is_missing_not_500(server, store):
    root, _ = store
    shutil.rmtree(root / "models" / "efficientnet_lite2")
    time.sleep(STORE_STATUS_TTL_S + 0.5)
    listing = httpx.get(server.http_url + "/models", timeout=30)
    assert listing.status_code == 200
    models = {m["name"]: m for m in listing.json()["models"]}
    assert models["efficientnet_lite2"]["weights"] == "missing"
    one = httpx.get(server.http_url + "/models/efficientnet_lite2", timeout=30)
    assert one.status_code == 200


def test_the_server_stops_on_sigterm_with_a_load_still_blocked(server, store, digit_pngs):
    # A new load of the FIFO model blocks again (nobody writes); the load thread is a daemon,
    # so the worker still exits on SIGTERM.
    httpx.post(server.http_url + "/classify", params={"model": "efficientnet_lite0"},
               content=digit_pngs[0][0], headers={"content-type": "image/png"}, timeout=120)
    os.killpg(server.process.pid, signal.SIGTERM)
    started = time.monotonic()
    server.process.wait(30)
    assert time.monotonic() - started < 25
    assert server.process.returncode != -signal.SIGKILL
