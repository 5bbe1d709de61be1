"""Weights obtained as a user with a network, a mirror or warm caches obtains them: for real.

`python -m model_store` runs in subprocesses, each with a model store and caches of its own
(TORCH_HOME, HF_HOME, KERAS_HOME under tmp_path), against a file server on 127.0.0.1 that
these tests start (tests/fixtures/file_server.py: Range, If-Range, broken-off bodies). Every
other address goes to a refusing proxy on loopback, so nothing leaves the machine.

The real registry entries are used throughout, with their checks as they are: files the
tests make can only pass where nothing is published and the first file is pinned (timm's Hub
files, Keras' MobileNet files), and torchvision's published digest prefixes refuse them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch

from model_store import registry
from tests.fixtures.file_server import FileServer
from tests.fixtures.keras_h5 import write_keras_h5
from tools.launch import start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
MOBILENET = "mobilenet_v1_0.25_128"
KERAS_URL = ("storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
             "mobilenet_2_5_128_tf.h5")
LITE0_HUB_PATH = "timm/tf_efficientnet_lite0.in1k/resolve/main/model.safetensors"
# Inherited settings that would send these runs elsewhere.
_FOREIGN = ("CONVZOO_WEIGHTS_MIRROR", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_HUB_CACHE",
            "TORCH_HOME", "KERAS_HOME", "XDG_CACHE_HOME", "no_proxy", "NO_PROXY")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> FileServer:
    server = FileServer(tmp_path_factory.mktemp("served")).start()
    yield server
    server.stop()


@pytest.fixture
def user(tmp_path) -> dict[str, str]:
    """The environment of a user with empty caches and a store of their own."""
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
    env.update(BENTOML_HOME=str(tmp_path / "bentoml"), BENTOML_DO_NOT_TRACK="true",
               TORCH_HOME=str(tmp_path / "torch"), HF_HOME=str(tmp_path / "hf"),
               KERAS_HOME=str(tmp_path / "keras"), no_proxy="127.0.0.1",
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    return env


def model_store(env: dict[str, str], *args: str, check: bool = True
                ) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "model_store", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def stored_record(env: dict[str, str], name: str) -> dict | None:
    return json.loads(model_store(env, "info", name).stdout)["stored"]


def downloads(env: dict[str, str]) -> list[Path]:
    folder = Path(env["BENTOML_HOME"]) / "convzoo" / "downloads"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def serve_file(files: FileServer, relative: str, data: bytes) -> str:
    path = files.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return "/" + relative


def mobilenet_h5(path: Path, seed: int) -> bytes:
    """A Keras-layout MobileNet v1 0.25/128 file with random weights (seeded)."""
    torch.manual_seed(seed)
    write_keras_h5(registry.get(MOBILENET).build().state_dict(), path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def lite0_hub_file(tmp_path_factory) -> bytes:
    """EfficientNet-Lite0's real ImageNet weights in timm's Hub format (model.safetensors),
    converted from the registry package that ships them."""
    from safetensors.torch import save_file

    from model_store.converters.lite_package import convert, package_file

    spec = registry.get("efficientnet_lite0")
    state = convert(package_file(spec.offline_source.package), spec)
    path = tmp_path_factory.mktemp("lite0") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path.read_bytes()


def test_hub_download_is_verified_converted_stored_and_served(
        files, user, lite0_hub_file, tmp_path, monkeypatch, cat_jpeg):
    served = serve_file(files, f"hub1/{LITE0_HUB_PATH}", lite0_hub_file)
    env = {**user, "HF_ENDPOINT": f"{files.url}/hub1"}
    out = model_store(env, "pull", "efficientnet_lite0", "--source", "timm").stdout
    assert "stored efficientnet_lite0:" in out and "(downloaded)" in out
    record = stored_record(env, "efficientnet_lite0")
    provenance = record["provenance"]
    assert provenance["fetched_from"] == files.url + served
    assert provenance["url"] == registry.get("efficientnet_lite0").weights[1].url
    assert provenance["check"] == "sha256 pinned now (first seen)"
    assert record["weights"] == "pretrained" and record["onnx_parity_max_abs_diff"] < 1e-3
    assert [r.status for r in files.requests_for(served)] == [200]

    monkeypatch.setenv("BENTOML_HOME", env["BENTOML_HOME"])
    (tmp_path / "server").mkdir()
    server = start_server(tmp_path / "server", {
        "default_model": "efficientnet_lite0", "startup_models": ["efficientnet_lite0"],
        "batching": {"max_batch_size": 4, "max_delay_ms": 0, "max_queue": 16, "instances": 1},
    }, check_store=False)
    try:
        response = httpx.post(server.http_url + "/classify", timeout=60,
                              files={"image": ("cat.jpg", cat_jpeg, "image/jpeg")},
                              data={"top_k": "3"})
    finally:
        stop_server(server)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "efficientnet_lite0" and body["weights"] == "pretrained"
    assert body["predictions"][0]["index"] in CAT_CLASSES


def test_a_broken_off_download_is_resumed_by_the_next_run(files, user, tmp_path):
    data = mobilenet_h5(tmp_path / "m.h5", seed=3)
    served = serve_file(files, f"resume/{KERAS_URL}", data)
    files.cut_after[served] = len(data) // 2
    env = {**user, "CONVZOO_WEIGHTS_MIRROR": f"{files.url}/resume"}
    failed = model_store(env, "pull", MOBILENET, "--retries", "0", check=False)
    assert failed.returncode == 2
    assert f"{len(data) // 2} bytes kept" in failed.stderr, failed.stderr
    part, validator = downloads(env)  # the bytes so far, and the ETag to resume against
    assert (part.name, validator.name) == ("mobilenet_2_5_128_tf.h5.part",
                                           "mobilenet_2_5_128_tf.h5.part.json")
    assert part.stat().st_size == len(data) // 2

    out = model_store(env, "pull", MOBILENET).stdout
    assert f"stored {MOBILENET}:" in out
    first, second = files.requests_for(served)
    assert (first.range, first.status) == (None, 200)
    assert (second.range, second.status) == (f"bytes={len(data) // 2}-", 206)
    assert [p.name for p in downloads(env)] == ["mobilenet_2_5_128_tf.h5"]
    assert stored_record(env, MOBILENET)["provenance"]["sha256"] == (
        hashlib.sha256(data).hexdigest())


def test_a_download_with_the_wrong_digest_is_refused_and_nothing_stored(files, user, tmp_path):
    spec = registry.get("squeezenet1_1")
    source = spec.weights[0]
    torch.manual_seed(0)
    torch.save(spec.build().state_dict(), tmp_path / "fake.pth")
    served = serve_file(files, "wrong/" + source.url.removeprefix("https://"),
                        (tmp_path / "fake.pth").read_bytes())
    env = {**user, "CONVZOO_WEIGHTS_MIRROR": f"{files.url}/wrong"}
    refused = model_store(env, "pull", "squeezenet1_1", check=False)
    assert refused.returncode == 2
    assert f"downloaded from {files.url}{served}, then refused" in refused.stderr
    assert f"does not start with {source.sha256_prefix}" in refused.stderr
    assert "nothing was stored" in refused.stderr
    assert stored_record(env, "squeezenet1_1") is None
    assert downloads(env) == []


def test_mobilenet_keras_file_through_the_mirror_is_pinned_on_first_import(
        files, user, tmp_path):
    first = mobilenet_h5(tmp_path / "first.h5", seed=1)
    served = serve_file(files, f"mirror/{KERAS_URL}", first)
    env = {**user, "CONVZOO_WEIGHTS_MIRROR": f"{files.url}/mirror"}
    assert f"stored {MOBILENET}:" in model_store(env, "pull", MOBILENET).stdout
    provenance = stored_record(env, MOBILENET)["provenance"]
    assert provenance["fetched_from"] == files.url + served
    assert provenance["check"] == "sha256 pinned now (first seen)"
    pins = json.loads((Path(env["BENTOML_HOME"]) / "convzoo" / "pins.json").read_text())
    assert pins[f"{MOBILENET}:mobilenet_2_5_128_tf.h5"] == provenance["sha256"]

    # The mirror now serves another file under the same name: refused against the pin.
    serve_file(files, f"mirror/{KERAS_URL}", mobilenet_h5(tmp_path / "second.h5", seed=2))
    for cached in downloads(env):
        cached.unlink()
    refused = model_store(env, "pull", MOBILENET, "--force", check=False)
    assert refused.returncode == 2 and "pinned when" in refused.stderr
    assert stored_record(env, MOBILENET)["provenance"]["sha256"] == provenance["sha256"]
    assert downloads(env) == []


def test_a_torch_hub_cache_file_is_verified_and_refused_with_its_path(files, user, tmp_path):
    spec = registry.get("squeezenet1_1")
    cached = Path(user["TORCH_HOME"]) / "hub" / "checkpoints" / spec.weights[0].file_name
    cached.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(spec.build().state_dict(), cached)
    env = {**user, "CONVZOO_WEIGHTS_MIRROR": f"{files.url}/empty-mirror"}
    result = model_store(env, "pull", "squeezenet1_1", check=False)
    assert result.returncode == 2
    assert f"refused {cached} (PyTorch hub cache)" in result.stderr
    assert "HTTP 404" in result.stderr  # then the mirror was asked, and had nothing
    assert stored_record(env, "squeezenet1_1") is None
    assert cached.exists()  # the user's cache is refused, not touched


def test_a_hugging_face_cache_file_is_used_with_the_hub_offline(user):
    hub = Path(user["HF_HOME"]) / "hub"
    env = {**user, "HF_HUB_OFFLINE": "1"}
    missing = model_store(env, "pull", "efficientnet_lite0", "--source", "timm", check=False)
    assert missing.returncode == 2 and "HF_HUB_OFFLINE is set" in missing.stderr

    repo = hub / "models--timm--tf_efficientnet_lite0.in1k"
    revision = "d4f3b1c2a5e6f7089a1b2c3d4e5f60718293a4b5"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision / "model.safetensors"
    snapshot.parent.mkdir(parents=True)
    from safetensors.torch import save_file

    torch.manual_seed(4)  # random weights: this test is about where the file is found
    save_file(registry.get("efficientnet_lite0").build().state_dict(), str(snapshot))
    out = model_store(env, "pull", "efficientnet_lite0", "--source", "timm").stdout
    assert "(from the Hugging Face cache)" in out
    provenance = stored_record(env, "efficientnet_lite0")["provenance"]
    assert provenance["imported_from"] == str(snapshot)
    assert provenance["found_in"] == "Hugging Face cache"
    assert downloads(env) == []


def test_pull_family_plans_totals_and_is_idempotent_then_force_and_prune(
        files, user, tmp_path):
    sizes = {}
    for resolution, seed in ((128, 5), (160, 6)):
        name = f"mobilenet_2_5_{resolution}_tf.h5"
        data = mobilenet_h5(tmp_path / name, seed)
        sizes[resolution] = len(data)
        serve_file(files, f"family/{KERAS_URL.replace('mobilenet_2_5_128_tf.h5', name)}", data)
    env = {**user, "CONVZOO_WEIGHTS_MIRROR": f"{files.url}/family"}
    result = model_store(env, "pull", "--family", "mobilenet_v1", "--no-progress", check=False)
    assert result.returncode == 2  # 14 of the 16 files are not on this mirror
    lines = result.stdout.splitlines()
    from model_store.pulling import human_bytes

    total = human_bytes(sizes[128] + sizes[160])
    assert lines[0] == (f"pull: 16 variants: 0 already stored (--force re-imports), "
                        f"16 to download ({total} for 2 of them)")
    assert lines[-1].startswith(f"pull: 2 stored, 0 skipped (already stored), 14 failed; "
                                f"2 downloaded ({total}), 0 from caches;")
    assert result.stderr.count("HTTP 404") == 14

    # Idempotent: nothing is fetched or stored again.
    before = len(files.requests)
    again = model_store(env, "pull", "mobilenet_v1_0.25_128", "mobilenet_v1_0.25_160").stdout
    assert "2 already stored" in again and "pull: 0 stored, 2 skipped" in again
    assert len(files.requests) == before

    # --force makes a new version (from the download cache); prune removes the old one.
    forced = model_store(env, "pull", "mobilenet_v1_0.25_128", "--force").stdout
    assert "(from the ConvZoo download cache)" in forced
    listed = model_store(env, "prune", "--dry-run").stdout
    assert listed.count("would delete mobilenet_v1_0.25_128:") == 1
    pruned = model_store(env, "prune").stdout
    assert "prune: deleted 1 old versions" in pruned
    assert "prune: would delete 0" in model_store(env, "prune", "--dry-run").stdout
    assert stored_record(env, "mobilenet_v1_0.25_128")["weights"] == "pretrained"


def test_import_from_dir_takes_known_files_and_reports_the_rest(user, tmp_path):
    folder = tmp_path / "downloads-from-elsewhere"
    folder.mkdir()
    h5 = folder / "mobilenet_2_5_128_tf.h5"
    mobilenet_h5(h5, seed=7)
    squeeze = registry.get("squeezenet1_1")
    wrong = folder / squeeze.weights[0].file_name
    torch.save(squeeze.build().state_dict(), wrong)
    (folder / "notes.txt").write_text("not weights")
    result = model_store(user, "import", "--from-dir", str(folder), check=False)
    assert result.returncode == 2  # one file refused
    out = result.stdout
    assert f"took     {h5} -> {MOBILENET}:" in out
    assert f"refused  {wrong} (squeezenet1_1):" in out and "does not start with" in out
    assert f"skipped  {folder / 'notes.txt'}: not a known weights file name" in out
    assert out.splitlines()[-1] == "import: 3 files: 1 taken, 1 refused, 1 skipped"

    wrong.unlink()
    again = model_store(user, "import", "--from-dir", str(folder)).stdout
    assert f"{MOBILENET} is already stored (--force re-imports)" in again
