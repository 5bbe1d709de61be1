"""User models in the store: the fine-tuned models `finetune` saves, found again by listing.

A user model is stored like a registry variant (`model_store.store.save`: `model.onnx` with
`logits` and `features`, `weights.safetensors`, `convzoo.json`), with weight status
`fine-tuned`, labels `custom` (the class names are the record's `classes`, in output order)
and its model card in the record. It is not in the registry, which is read-only and built
from code; `list_user_models` finds user models in the store, newest version of each name,
and gives each the `ModelSpec` it was saved under (the backbone's input contract and
family, a builder for backbone plus head), so serving can treat it as any variant.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from model_store import registry
from model_store.finetune.errors import FinetuneError
from model_store.repository import FINE_TUNED, RECORD_FILE
from model_store.specs import InputSpec, ModelSpec

CUSTOM_LABELS = "custom"  # a user model's label set: the names in its record's "classes"
# BentoML's tag names: lowercase letters, digits, and . _ - inside, at most 63 characters.
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class UserModel:
    """One fine-tuned model as stored (its newest version)."""

    name: str
    tag: str
    path: Path
    record: dict[str, Any]

    @property
    def backbone(self) -> str:
        return self.record["backbone"]

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.record["classes"])

    @property
    def input(self) -> InputSpec:
        fields = dict(self.record["input"])
        fields.update(mean=tuple(fields["mean"]), std=tuple(fields["std"]))
        return InputSpec(**fields)

    @property
    def held_out_top1(self) -> float:
        return float(self.record["model_card"]["held_out"]["top1"])

    @property
    def spec(self) -> ModelSpec:
        return spec_from_record(self.name, self.record)


def spec_from_record(name: str, record: dict[str, Any]) -> ModelSpec:
    """The spec of a stored user model, from its record (torch-free: serving reads it)."""
    return user_model_spec(name, registry.get(record["backbone"]), record["features_layer"],
                           int(record["features_dim"]), len(record["classes"]))


def _build_finetuned(*args: Any):
    # torch only when a user model is built (importing it), never when one is served
    from model_store.finetune.network import build_finetuned

    return build_finetuned(*args)


def user_model_spec(name: str, backbone: ModelSpec, features_layer: str, features_dim: int,
                    num_classes: int) -> ModelSpec:
    """The spec a user model is saved and served under: the backbone's input and family."""
    return ModelSpec(
        name=name,
        family=backbone.family,
        build=partial(_build_finetuned, backbone.name, features_layer, features_dim,
                      num_classes),
        input=backbone.input,
        labels=CUSTOM_LABELS,
        weights=(),
        published=None,
        paper=f"fine-tuned here from {backbone.name} ({backbone.paper})",
        num_classes=num_classes,
    )


def list_user_models() -> list[UserModel]:
    """Every user model in the store (newest version of each name), sorted by name."""
    import bentoml

    newest: dict[str, Any] = {}
    for model in bentoml.models.list():
        if model.info.labels.get("weights") != FINE_TUNED:
            continue
        name = model.tag.name
        if name not in newest or model.creation_time > newest[name].creation_time:
            newest[name] = model
    found = []
    for name in sorted(newest):
        path = Path(newest[name].path)
        record = json.loads((path / RECORD_FILE).read_text())
        found.append(UserModel(name, str(newest[name].tag), path, record))
    return found


def find_user_model(name: str) -> UserModel | None:
    return next((m for m in list_user_models() if m.name == name), None)


def check_new_name(name: str, force: bool) -> None:
    """FinetuneError unless `name` can be a new user model (or, with `force`, a new version
    of an existing one)."""
    import bentoml
    from bentoml.exceptions import NotFound

    if not _NAME.fullmatch(name):
        raise FinetuneError(
            f"model name {name!r}: use lowercase letters, digits and . _ - (not first or last), "
            "at most 63 characters")
    if name in registry.all_specs():
        raise FinetuneError(f"model name {name!r} is a registry model; choose another name")
    try:
        existing = bentoml.models.get(f"{name}:latest")
    except NotFound:
        return
    if existing.info.labels.get("weights") != FINE_TUNED:
        raise FinetuneError(f"model name {name!r} is taken in the store by a model that is "
                            "not a ConvZoo user model; choose another name")
    if not force:
        raise FinetuneError(f"user model {name!r} exists ({existing.tag}); choose another name "
                            "or pass --force to store a new version")
