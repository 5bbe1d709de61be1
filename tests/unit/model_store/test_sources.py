"""Where a source is fetched from: published URL, mirror layout, Hugging Face Hub."""

from __future__ import annotations

import pytest
from huggingface_hub import constants

from model_store import registry
from model_store.sources import fetch_url, hub_file, mirror_base, on_mirror
from model_store.weights import WeightsError


def test_mirror_layout_is_host_then_path():
    url = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    assert on_mirror(url, "http://mirror.internal/weights/") == (
        "http://mirror.internal/weights/download.pytorch.org/models/resnet50-0676ba61.pth")
    assert on_mirror("https://h.example/a/b?x=1", "http://m") == "http://m/h.example/a/b?x=1"


def test_every_registry_url_has_a_place_on_the_mirror():
    for spec in registry.all_specs().values():
        for source in spec.weights:
            if source.url:
                mirrored = fetch_url(source, "http://m.internal")
                assert mirrored.startswith("http://m.internal/") and mirrored.endswith(
                    source.file_name)


def test_mirror_from_the_environment_and_the_flag_wins(monkeypatch):
    monkeypatch.setenv("CONVZOO_WEIGHTS_MIRROR", "http://env.mirror")
    assert mirror_base() == "http://env.mirror"
    assert mirror_base("http://flag.mirror") == "http://flag.mirror"
    monkeypatch.delenv("CONVZOO_WEIGHTS_MIRROR")
    assert mirror_base() is None
    with pytest.raises(WeightsError, match="http:// or https://"):
        mirror_base("/srv/mirror")


def test_timm_sources_are_hub_files_and_others_are_not():
    lite0 = registry.get("efficientnet_lite0")
    timm_source = next(s for s in lite0.weights if s.format == "timm")
    hub = hub_file(timm_source)
    assert (hub.repo_id, hub.filename, hub.revision) == (
        "timm/tf_efficientnet_lite0.in1k", "model.safetensors", "main")
    assert hub_file(registry.get("resnet18").weights[0]) is None


def test_without_a_mirror_hub_files_come_from_the_hub_endpoint():
    timm_source = next(s for s in registry.get("inception_resnet_v2").weights)
    url = fetch_url(timm_source, None)
    assert url == (f"{constants.ENDPOINT}/timm/inception_resnet_v2.tf_in1k/resolve/main/"
                   "model.safetensors")
    resnet = registry.get("resnet18").weights[0]
    assert fetch_url(resnet, None) == resnet.url


def test_hub_offline_downloads_nothing_from_the_hub(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    timm_source = registry.get("inception_resnet_v2").weights[0]
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE is set"):
        fetch_url(timm_source, None)
    # Files published elsewhere are not the Hub's business.
    resnet = registry.get("resnet18").weights[0]
    assert fetch_url(resnet, None) == resnet.url
