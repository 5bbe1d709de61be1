"""The models serving knows: the registry's variants, and the user models in their own table.

The registry (`model_store.registry`) is declarative and read-only, built from code. User
models (fine-tuned by `python -m model_store finetune`) live only in the store, so they are
kept apart, in a table built from the repository: at start-up (`refresh`), and again for a
name neither knows, which is looked up in the store once before the request is answered
`model_not_found`. A model fine-tuned while the service runs is then served on its first
request, with no restart; the table only ever gains the user models the store holds.

A user model is served under the spec it was stored with (`model_store.finetune.user_models`:
its backbone's input contract and family), its class names from its record. Its label set,
for ensembles, is its class names: user models trained on the same classes can be members of
one ensemble, as registry models sharing `imagenet-1k` can.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from model_store import registry
from model_store.finetune.user_models import spec_from_record
from model_store.labels import label_names
from model_store.registry import UnknownModel
from model_store.repository import BrokenStoreEntry, ModelRepository, StoredModel
from model_store.specs import ModelSpec
from service.core.errors import ModelNotFound

log = logging.getLogger("convzoo.core")


@dataclass(frozen=True)
class UserModel:
    """A fine-tuned model as the table holds it: its spec and its class names."""

    spec: ModelSpec
    classes: tuple[str, ...]
    backbone: str


def user_model(stored: StoredModel) -> UserModel:
    record = stored.record
    return UserModel(spec_from_record(stored.name, record), tuple(record["classes"]),
                     record["backbone"])


class ModelSpecs:
    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository
        self._users: dict[str, UserModel] = {}
        self._lock = threading.Lock()  # lookups run on the loading threads too

    def refresh(self) -> None:
        """The store's user models into the table (start-up; a listing of the store)."""
        try:
            stored_models = self.repository.user_models()
        except BrokenStoreEntry as exc:  # then each is still found on its first request
            log.error("user models not listed: %s", exc)
            return
        found = {}
        for name, stored in stored_models.items():
            if name in registry.all_specs():
                continue  # never shadows a registry entry (finetune refuses such names)
            try:
                found[name] = user_model(stored)
            except (KeyError, TypeError, ValueError, UnknownModel) as exc:
                log.error("user model %s is not served: its record is incomplete (%s)", name,
                          exc)
        with self._lock:
            self._users.update(found)

    def spec(self, name: str) -> ModelSpec:
        """`name`'s spec: the registry's, a user model's, or ModelNotFound naming the valid
        models (after one look in the store for a user model of that name)."""
        try:
            return registry.get(name)
        except UnknownModel as exc:
            found = self.user(name)
            if found is None:
                raise ModelNotFound(str(exc), model=name, valid_models=self.names()) from None
            return found.spec

    def user(self, name: str) -> UserModel | None:
        """User model `name`, from the table or, the first time it is asked for, the store."""
        with self._lock:
            known = self._users.get(name)
        if known is not None or name in registry.all_specs():
            return known
        stored = self.repository.find_user_model(name)
        if stored is None:
            return None
        try:
            found = user_model(stored)
        except (KeyError, TypeError, ValueError, UnknownModel):
            return None
        with self._lock:
            self._users[name] = found
        log.info("user model %s (fine-tuned from %s) joined the served models", name,
                 found.backbone)
        return found

    def is_known(self, name: str) -> bool:
        """Whether `name` is a registry model or a user model in the table (no store read:
        metric labels ask this for every request)."""
        return name in registry.all_specs() or name in self._users

    def names(self) -> list[str]:
        """Every model served: the registry's, then the user models', each sorted."""
        with self._lock:
            users = sorted(self._users)
        return [*registry.all_specs(), *users]

    def users(self) -> dict[str, UserModel]:
        with self._lock:
            return dict(self._users)

    def label_names(self, name: str) -> tuple[str, ...]:
        """The class names of `name`'s outputs, in order."""
        found = self._users.get(name)
        return found.classes if found else tuple(label_names(self.spec(name).labels))

    def label_set(self, name: str) -> str:
        """What `name`'s outputs mean, as ensembles compare it: the registry's label set, or a
        user model's class names."""
        found = self.user(name) if name not in registry.all_specs() else None
        if found is not None:
            return f"{found.spec.labels}: {', '.join(found.classes)}"
        return self.spec(name).labels
