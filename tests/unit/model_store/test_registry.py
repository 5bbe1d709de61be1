"""Registry completeness and its invariants."""

from __future__ import annotations

import pytest

from model_store import registry
from model_store.specs import ModelSpec

REQUIRED = [
    "lenet5", "alexnet",
    *[f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")],
    *[f"resnet{d}" for d in (18, 34, 50, 101, 152)],
    "googlenet", "inception_v3", "inception_resnet_v2", "squeezenet1_0", "squeezenet1_1",
    *[f"mobilenet_v1_{a}_{r}" for a in (0.25, 0.5, 0.75, 1.0) for r in (128, 160, 192, 224)],
    "mobilenet_v2",
    *[f"efficientnet_b{i}" for i in range(8)],
    *[f"efficientnet_lite{i}" for i in range(3)],
]


def test_every_required_variant_is_registered():
    missing = set(REQUIRED) - set(registry.all_specs())
    assert not missing


@pytest.mark.parametrize("name", REQUIRED)
def test_entry_is_complete(name):
    spec = registry.get(name)
    assert spec.weights, f"{name} has no weight source"
    assert spec.input.size > 0 and spec.input.resize >= spec.input.size
    assert len(spec.input.mean) == len(spec.input.std) == spec.input.channels
    assert spec.labels in ("imagenet-1k", "digits")
    if name != "lenet5":
        assert spec.published is not None and spec.published.top1 is not None
        assert spec.published.source
        # Every non-offline weight source has a real download path.
        assert spec.download_source is not None and spec.download_source.url.startswith("https://")


def test_torchvision_sources_carry_the_sha256_prefix_of_their_file_name():
    spec = registry.get("resnet50")
    source = spec.weights[0]
    assert source.file_name == "resnet50-0676ba61.pth"
    assert source.sha256_prefix == "0676ba61"


def test_register_refuses_duplicates_and_is_read_only_after_import():
    spec = registry.get("alexnet")
    with pytest.raises(RuntimeError, match="read-only"):
        registry.register(spec)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(registry.UnknownModel) as info:
        registry.get("resnet9000")
    assert "resnet50" in str(info.value)


def test_embedded_default_is_offline():
    defaults = {s.name for s in registry.embedded_defaults()}
    assert defaults == {"lenet5", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}
    for name in defaults:
        assert registry.get(name).offline_source is not None


def test_specs_are_frozen():
    spec: ModelSpec = registry.get("alexnet")
    with pytest.raises(AttributeError):
        spec.name = "x"  # type: ignore[misc]
