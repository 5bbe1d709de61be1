"""`python -m model_store` for real, in subprocesses with a model store of their own.

The download path is exercised against a proxy address on loopback that refuses connections,
so no traffic leaves the machine and the offline error is the real one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model_store import registry
from tests.fixtures.keras_h5 import write_keras_h5

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store_home(tmp_path) -> Path:
    return tmp_path / "bentoml"


def run_cli(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true",
           # Any download goes to a refusing loopback proxy: the offline path, for real.
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           # Empty caches: weights a developer keeps in theirs must not change the results.
           "TORCH_HOME": str(home / "torch"), "HF_HOME": str(home / "hf"),
           "KERAS_HOME": str(home / "keras")}
    for variable in ("no_proxy", "NO_PROXY", "CONVZOO_WEIGHTS_MIRROR", "HF_ENDPOINT",
                     "HF_HUB_CACHE"):
        env.pop(variable, None)
    result = subprocess.run([sys.executable, "-m", "model_store", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def test_list_shows_every_variant_with_its_weight_status(store_home):
    rows = json.loads(run_cli("list", "--json", home=store_home).stdout)
    assert {r["name"] for r in rows} == set(registry.all_specs())
    assert {r["weights"] for r in rows} == {"missing"}
    text = run_cli("list", home=store_home).stdout
    assert "mobilenet_v1_0.75_160" in text and "48 variants" in text


def test_download_offline_says_which_file_to_fetch_and_how_to_import(store_home):
    result = run_cli("pull", "resnet18", home=store_home, check=False)
    assert result.returncode == 2
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in result.stderr
    assert ("python -m model_store import resnet18 --from-file resnet18-f37072fd.pth"
            in result.stderr)


def test_import_torchvision_file_with_wrong_digest_is_refused(store_home, tmp_path):
    spec = registry.get("squeezenet1_1")
    path = tmp_path / spec.weights[0].file_name
    torch.save(spec.build().state_dict(), path)
    result = run_cli("import", "squeezenet1_1", "--from-file", str(path), home=store_home,
                     check=False)
    assert result.returncode == 2
    assert "does not start with" in result.stderr and spec.weights[0].sha256_prefix in result.stderr


def test_import_refuses_pickled_code(store_home, tmp_path):
    path = tmp_path / "evil.pth"
    # An arbitrary object: unpickling it would run code a weights file must not carry.
    torch.save({"model": argparse.Namespace(payload="anything")}, path)
    result = run_cli("import", "inception_resnet_v2", "--from-file", str(path),
                     home=store_home, check=False)
    assert result.returncode == 2
    assert "weights_only" in result.stderr


def test_timm_safetensors_import_then_pin_refuses_a_different_file(store_home, tmp_path):
    from safetensors.torch import save_file

    spec = registry.get("efficientnet_lite0")
    torch.manual_seed(1)
    first = tmp_path / "a" / "model.safetensors"
    first.parent.mkdir()
    save_file(spec.build().state_dict(), str(first))
    out = run_cli("import", "efficientnet_lite0", "--from-file", str(first), home=store_home)
    assert "stored efficientnet_lite0:" in out.stdout
    info = json.loads(run_cli("info", "efficientnet_lite0", home=store_home).stdout)
    assert info["weights"] == "pretrained"
    assert info["stored"]["provenance"]["check"] == "sha256 pinned now (first seen)"
    assert info["stored"]["onnx_parity_max_abs_diff"] < 1e-3
    verified = json.loads(run_cli("verify", "efficientnet_lite0", home=store_home).stdout)
    assert verified["files"] == "sha256 ok"

    torch.manual_seed(2)
    second = tmp_path / "b" / "model.safetensors"
    second.parent.mkdir()
    save_file(spec.build().state_dict(), str(second))
    refused = run_cli("import", "efficientnet_lite0", "--from-file", str(second),
                      home=store_home, check=False)
    assert refused.returncode == 2 and "pinned" in refused.stderr


def test_keras_h5_import_and_verify(store_home, tmp_path):
    spec = registry.get("mobilenet_v1_0.25_128")
    torch.manual_seed(0)
    model = spec.build()
    path = write_keras_h5(model.state_dict(), tmp_path / "mobilenet_2_5_128_tf.h5")
    out = run_cli("import", spec.name, "--from-file", str(path), home=store_home)
    assert f"stored {spec.name}:" in out.stdout
    verified = json.loads(run_cli("verify", spec.name, home=store_home).stdout)
    assert verified["weights"] == "pretrained" and verified["onnx_parity_max_abs_diff"] < 1e-3


def test_random_init_only_when_asked_and_marked(store_home):
    out = run_cli("pull", "lenet5", "--random-init", home=store_home)
    assert "(random-init)" in out.stdout
    rows = {r["name"]: r for r in json.loads(run_cli("list", "--json", home=store_home).stdout)}
    assert rows["lenet5"]["weights"] == "random-init"
    info = json.loads(run_cli("info", "lenet5", home=store_home).stdout)
    assert info["stored"]["weights"] == "random-init"


def test_unknown_model_is_a_clear_error(store_home):
    result = run_cli("info", "resnet9000", home=store_home, check=False)
    assert result.returncode == 2 and "known models" in result.stderr
