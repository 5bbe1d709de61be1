"""The typed configuration: every section checked when the file is read, with the file and the
key named, so a broken setting stops the start instead of failing a request; the shipped
configurations load."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from service.core.config import (
    DEFAULT_CONFIG_PATH,
    BatchingConfig,
    EnsembleConfig,
    ServingConfig,
    load_config,
)
from tests.conftest import ROOT


@pytest.mark.parametrize("text, message", [
    ("ensembles: {pair: {models: [a, b], method: median}}",
     r"ensembles.pair.method: method must be one of mean, geometric, logit_mean"),
    ("ensembles: {pair: {models: [a, b], weigths: [1, 2]}}", r"ensembles.pair.weigths"),
    ("ensembles: {pair: {models: [a, b], weights: [1, x]}}", r"ensembles.pair.weights.1"),
    ("ensembles: {pair: {method: mean}}", r"ensembles.pair.models"),
    ("batching: {instances: 0}", "batching instances must be a positive integer or 'auto'"),
    ("batching: {max_batch_size: 0}", r"batching.max_batch_size: must be at least 1"),
    ("batching: {max_batch: 8}", r"batching.max_batch"),
    ("batching: {preferred_batch_size: 0}",
     "preferred_batch_size must be a positive integer, 'auto' or null"),
    ("batching: {preferred_batch_size: fast}", r"batching.preferred_batch_size"),
    ("batching: {max_batch_size: 8, preferred_batch_size: 16}",
     r"preferred_batch_size \(16\) must not exceed max_batch_size \(8\)"),
    ("per_model_batching: {lenet5: {instances: many}}", r"per_model_batching.lenet5.instances"),
    ("decode_lanes: [{name: small, max_image_pixels: 0, budget_pixels: 10}]",
     r"decode_lanes.0.max_image_pixels: must be at least 1"),
    ("tensorrt: {engine_cache: maybe}", r"tensorrt.engine_cache"),
    ("max_top_k: 0", "max_top_k must be at least 1"),
    ("request_timeout_s: 0", "request_timeout_s must be positive"),
    ("max_header_bytes: 100", "max_header_bytes must be at least 1024"),
    ("startup_models: lenet5", "startup_models must be a list, not a string"),
    ("- just a list", "the configuration must be a mapping"),
])
def test_a_broken_setting_is_refused_when_the_file_is_read(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ValueError, match=message) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_sections_are_typed_frozen_and_checked_again_when_replaced(tmp_path):
    config = load_config(tmp_path / "none.yaml", ensembles={
        "pair": {"models": ["efficientnet_lite0", "efficientnet_lite1"], "weights": [1, 3]}})
    pair = config.ensembles["pair"]
    assert isinstance(pair, EnsembleConfig) and pair.weights == (1.0, 3.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_top_k = 5
    assert dataclasses.replace(config.batching, max_batch_size=8).max_batch_size == 8
    with pytest.raises(ValueError, match="positive integer or 'auto'"):
        dataclasses.replace(config.batching, instances=-1)
    assert ServingConfig().batching == BatchingConfig()


@pytest.mark.parametrize("path", [DEFAULT_CONFIG_PATH, "deploy/k8s/configmap.yaml"])
def test_the_shipped_configurations_load(path, tmp_path):
    path = ROOT / path
    if path.name == "configmap.yaml":  # the configuration file is one entry of the map
        data = yaml.safe_load(path.read_text())["data"]
        (text,) = [value for key, value in data.items() if key.endswith(".yaml")]
        path = tmp_path / "from-configmap.yaml"
        path.write_text(text)
    config = load_config(path)
    assert config.startup_models and config.default_model
