"""The data files extracted from torchvision (model_store.torchvision_data) are what the
installed torchvision says, and hold exactly the registry's torchvision models: the registry
and the serving path read them instead of importing torch."""

from __future__ import annotations

from model_store import registry, torchvision_data
from model_store.labels import label_names


def test_the_imagenet_class_names_are_torchvisions():
    shipped = torchvision_data.LABELS_FILE.read_text()
    assert shipped == torchvision_data.labels_text(torchvision_data.imagenet_labels())
    names = label_names("imagenet-1k")
    assert len(names) == 1000 and names[:2] == ("tench", "goldfish")


def test_the_weights_records_are_torchvisions_for_every_registry_row():
    assert torchvision_data.recorded_names() == list(registry.TORCHVISION_NAMES)
    shipped = torchvision_data.WEIGHTS_FILE.read_text()
    assert shipped == torchvision_data.weights_text(
        torchvision_data.weights_records(list(registry.TORCHVISION_NAMES)))


def test_a_registry_spec_carries_its_records_figures():
    spec = registry.get("resnet50")
    assert spec.input.size == 224 and spec.input.resize == 256
    assert spec.published.top1 == 76.13 and spec.published.params_m == 25.557032
    assert spec.weights[0].sha256_prefix == "0676ba61"
