"""The `convzoo` command from outside the checkout: the same store as make, a real server.

Run as `python -m tools.convzoo` (what the `convzoo` console script calls) from a folder
outside the checkout, with BENTOML_HOME unset, so the store rule is what finds the
checkout's `.bentoml`, which `make test` has filled with the embedded default models.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tools.launch import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def elsewhere(tmp_path) -> dict[str, str]:
    """An environment with no BENTOML_HOME, for commands run from tmp_path."""
    env = {k: v for k, v in os.environ.items() if k != "BENTOML_HOME"}
    env.update(PYTHONPATH=str(ROOT), BENTOML_DO_NOT_TRACK="true")
    return env


def run(env: dict[str, str], cwd: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_list_tells_the_truth_wherever_it_is_run(elsewhere, tmp_path):
    in_checkout = {**elsewhere, "BENTOML_HOME": str(ROOT / ".bentoml")}
    expected = json.loads(run(in_checkout, ROOT, "-m", "model_store", "list", "--json"))
    assert {r["name"]: r["weights"] for r in expected}["efficientnet_lite0"] == "pretrained"
    for command in (("-m", "model_store"), ("-m", "tools.convzoo", "models")):
        assert json.loads(run(elsewhere, tmp_path, *command, "list", "--json")) == expected
    where = run(elsewhere, tmp_path, "-m", "model_store", "where")
    assert f"BentoML home:  {ROOT / '.bentoml'}  (the checkout's store" in where


def test_serve_runs_the_service_on_the_checkouts_store_and_classify_reaches_it(
        elsewhere, tmp_path, digit_pngs):
    http_port, grpc_port = free_ports(2)
    config = tmp_path / "convzoo.yaml"
    config.write_text(yaml.safe_dump({"default_model": "lenet5", "startup_models": ["lenet5"],
                                      "grpc_port": grpc_port}))
    env = {**elsewhere, "CONVZOO_CONFIG": str(config)}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tools.convzoo", "serve", "--host", "127.0.0.1",
             "--port", str(http_port)], cwd=tmp_path, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("not ready after 240 s:\n" + log.read_text())
        text = log.read_text()
        assert f"model store {ROOT / '.bentoml' / 'models'} (the checkout's store" in text
        assert "already stored" in text  # `make models`' step, idempotent
        model = httpx.get(url + "/models/lenet5", timeout=30).json()
        assert model["weights"] == "pretrained"

        digit, label = digit_pngs[0]
        image = tmp_path / "digit.png"
        image.write_bytes(digit)
        answer = json.loads(run(elsewhere, tmp_path, "-m", "tools.convzoo", "classify",
                                str(image), "--url", url, "--model", "lenet5", "--json"))
        assert answer["model"] == "lenet5"
        assert answer["predictions"][0]["label"] == str(label)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
