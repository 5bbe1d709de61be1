"""User-model names and the spec a user model is saved and served under."""

from __future__ import annotations

import pytest

from model_store import registry
from model_store.finetune.errors import FinetuneError
from model_store.finetune.user_models import CUSTOM_LABELS, check_new_name, user_model_spec


@pytest.mark.parametrize("name", ["Digits", "digits lite", "-digits", "digits-", "a" * 64,
                                  "dígitos", ""])
def test_names_bentoml_cannot_store_are_refused(name):
    with pytest.raises(FinetuneError, match="lowercase letters, digits"):
        check_new_name(name, force=False)


@pytest.mark.parametrize("force", [False, True])
def test_a_registry_name_is_refused_even_with_force(force):
    with pytest.raises(FinetuneError, match="'resnet50' is a registry model"):
        check_new_name("resnet50", force=force)


def test_spec_has_the_backbones_input_and_family_and_its_own_classes():
    backbone = registry.get("efficientnet_lite0")
    spec = user_model_spec("flowers", backbone, "classifier", 1280, 5)
    assert (spec.name, spec.family, spec.input, spec.num_classes, spec.labels) == (
        "flowers", "efficientnet_lite", backbone.input, 5, CUSTOM_LABELS)
    assert spec.weights == () and spec.published is None
    assert "flowers" not in registry.all_specs()  # never registered
    net = spec.build()
    assert net.head.out_features == 5 and net.head.in_features == 1280
