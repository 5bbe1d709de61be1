"""The model repository's read side: which variants are stored, and their files and records.

Serving reads the store through the `ModelRepository` protocol (`find`, `entries`), so that
the data plane receives a repository (BentoML's store, `BentoModelRepository`, in production;
a folder of files in tests) and never calls BentoML itself. The import side (build, export,
parity check, save) is `model_store.store`, which needs torch; this module does not.

A stored variant holds `model.onnx`, `weights.safetensors` and `convzoo.json` (the record
every response's `weights` field is drawn from). User models (`fine-tuned`, stored by
`python -m model_store finetune`) are stored the same way under names the registry does not
know; `user_models` and `find_user_model` read them, apart from the registry's entries. A
stored model whose files cannot be read (a damaged `model.yaml` or `convzoo.json`) is
`broken`, with what is wrong said without filesystem paths, and does not hide the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

PRETRAINED = "pretrained"
RANDOM_INIT = "random-init"
# A user model (model_store.finetune): a registry backbone with a head trained here. Not in
# WEIGHTS_STATUSES: `find` reads registry variants only; user models are read by
# `user_models` and `find_user_model`.
FINE_TUNED = "fine-tuned"
MISSING = "missing"
BROKEN = "broken"
WEIGHTS_STATUSES = (PRETRAINED, RANDOM_INIT)
RECORD_FILE = "convzoo.json"


class StoreError(RuntimeError):
    pass


class BrokenStoreEntry(StoreError):
    """A stored model that cannot be read. The message names the model and the damaged file,
    never a filesystem path (it reaches clients); the cause, with the path, is chained."""


@dataclass(frozen=True)
class StoredModel:
    """A variant as found in a repository: its folder, its tag and its import record."""

    name: str
    tag: str
    path: Path
    record: dict[str, Any] = field(compare=False)

    @property
    def weights_status(self) -> str:
        return self.record["weights"]

    @property
    def onnx_path(self) -> Path:
        return self.path / "model.onnx"

    @property
    def weights_path(self) -> Path:
        return self.path / "weights.safetensors"

    @classmethod
    def from_folder(cls, folder: Path, name: str, tag: str) -> StoredModel:
        """The model stored in `folder`, or BrokenStoreEntry when its record is damaged."""
        return cls(name, tag, Path(folder), read_record(Path(folder), name))


@dataclass(frozen=True)
class StoreEntry:
    """A registry model present in the store: its weights status, or BROKEN and why."""

    status: str  # pretrained | random-init | broken
    error: str | None = None


class ModelRepository(Protocol):
    """What serving needs of a model store."""

    def find(self, name: str) -> StoredModel | None:
        """The latest stored version of `name`, None when there is none, or
        BrokenStoreEntry."""

    def entries(self) -> dict[str, StoreEntry]:
        """Every registry model in the store, each read on its own."""

    def user_models(self) -> dict[str, StoredModel]:
        """Every readable user model in the store (its newest version), by name; or
        BrokenStoreEntry when the store cannot be listed at all."""

    def find_user_model(self, name: str) -> StoredModel | None:
        """The newest version of user model `name`; None when the store has no user model of
        that name (or only a damaged one)."""


def read_record(folder: Path, name: str, statuses: tuple[str, ...] = WEIGHTS_STATUSES
                ) -> dict[str, Any]:
    """A stored model's convzoo.json, or BrokenStoreEntry saying what is wrong with it (a
    weights status outside `statuses` among it)."""
    try:
        record = json.loads((folder / RECORD_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise BrokenStoreEntry(f"model {name}: {describe_store_error(exc, RECORD_FILE)}"
                               ) from exc
    if not isinstance(record, dict) or record.get("weights") not in statuses:
        raise BrokenStoreEntry(f"model {name}: {RECORD_FILE} has no valid 'weights' entry")
    return record


def describe_store_error(error: BaseException, file_name: str) -> str:
    """What is wrong with a store file, without its path (YAML and OS errors carry it)."""
    import yaml

    if isinstance(error, json.JSONDecodeError):
        return f"{file_name} is not valid JSON ({error.msg}, line {error.lineno})"
    if isinstance(error, yaml.YAMLError):
        mark = getattr(error, "problem_mark", None)
        return f"{file_name} is not valid YAML" + (f" (line {mark.line + 1})" if mark else "")
    if isinstance(error, OSError):
        return f"{file_name} cannot be read ({error.strerror or type(error).__name__})"
    return f"{file_name} cannot be read ({type(error).__name__})"


def entries_of(repository: ModelRepository, names: Iterable[str]) -> dict[str, StoreEntry]:
    """`names` found in `repository`, each on its own: one damaged entry is BROKEN, and
    does not hide the others."""
    entries: dict[str, StoreEntry] = {}
    for name in names:
        try:
            stored = repository.find(name)
        except BrokenStoreEntry as exc:
            entries[name] = StoreEntry(BROKEN, str(exc))
            continue
        if stored is not None:
            entries[name] = StoreEntry(stored.weights_status)
    return entries


class BentoModelRepository:
    """BentoML's model store (the one `BENTOML_HOME` names) as a ModelRepository."""

    def find(self, name: str) -> StoredModel | None:
        import bentoml
        from bentoml.exceptions import NotFound

        from model_store import registry

        registry.get(name)  # unknown names fail loudly, not as "missing"
        try:
            bento_model = bentoml.models.get(f"{name}:latest")
        except NotFound:
            return None
        except Exception as exc:  # BentoML reads model.yaml here
            raise BrokenStoreEntry(f"model {name}: {describe_store_error(exc, 'model.yaml')}"
                                   ) from exc
        return StoredModel.from_folder(Path(bento_model.path), bento_model.tag.name,
                                       str(bento_model.tag))

    def entries(self) -> dict[str, StoreEntry]:
        # Each read on its own: one damaged entry made `bentoml.models.list()`, and so every
        # listing, fail.
        from model_store import registry

        return entries_of(self, registry.all_specs())


    def user_models(self) -> dict[str, StoredModel]:
        import bentoml

        try:
            listed = bentoml.models.list()
        except Exception as exc:  # one damaged model.yaml fails BentoML's whole listing
            raise BrokenStoreEntry("the store's user models cannot be listed: "
                                   f"{describe_store_error(exc, 'model.yaml')}") from exc
        newest: dict[str, Any] = {}
        for model in listed:
            if model.info.labels.get("weights") != FINE_TUNED:
                continue
            name = model.tag.name
            if name not in newest or model.creation_time > newest[name].creation_time:
                newest[name] = model
        found = {}
        for name, model in sorted(newest.items()):
            stored = _user_model(Path(model.path), name, str(model.tag))
            if stored is not None:
                found[name] = stored
        return found

    def find_user_model(self, name: str) -> StoredModel | None:
        import bentoml

        try:
            model = bentoml.models.get(f"{name}:latest")
        except Exception:  # not there, a name BentoML refuses, or a damaged model.yaml
            return None
        if model.info.labels.get("weights") != FINE_TUNED:
            return None
        return _user_model(Path(model.path), name, str(model.tag))


def _user_model(folder: Path, name: str, tag: str) -> StoredModel | None:
    """A user model as stored; None (and it is not served) when its record is damaged."""
    try:
        return StoredModel(name, tag, folder, read_record(folder, name, (FINE_TUNED,)))
    except BrokenStoreEntry:
        return None


def find(name: str) -> StoredModel | None:
    """`name` in BentoML's store (see BentoModelRepository.find)."""
    return BentoModelRepository().find(name)


def stored_entries() -> dict[str, StoreEntry]:
    """Every registry model in BentoML's store (see BentoModelRepository.entries)."""
    return BentoModelRepository().entries()


def stored_status() -> dict[str, str]:
    """Weight status of every stored variant: {name: pretrained | random-init | broken}."""
    return {name: entry.status for name, entry in stored_entries().items()}
