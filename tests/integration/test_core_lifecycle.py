"""Model lifecycle: eviction under the memory budget (in-process), and a random-init model
served by a real server from a store of its own, marked as such in every response."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from service.core.config import load_config
from service.core.inference import InferenceCore
from tests.integration.conftest import ROOT, start_server, stop_server


async def test_least_recently_used_idle_model_is_evicted_under_the_memory_budget(tmp_path):
    # lite0 ~ 2 x 18 MB + 32 in the estimate, lenet5 ~ 32 MB: a 120 MB budget holds two.
    config = load_config(tmp_path / "none.yaml", default_model="efficientnet_lite0",
                         startup_models=("efficientnet_lite0",), memory_budget_mb=120)
    core = InferenceCore(config)
    try:
        await core.start()
        await core.engine("lenet5")
        assert set(core.engines) == {"efficientnet_lite0", "lenet5"}
        await core.engine("efficientnet_lite1")
        # lenet5 was the least recently used idle model; the default model is never evicted.
        assert set(core.engines) == {"efficientnet_lite0", "efficientnet_lite1"}
        info = core.model_info("lenet5")
        assert info["loaded"] is False and info["weights"] == "pretrained"
    finally:
        await core.close()


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
