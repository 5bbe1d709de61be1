"""What the data plane says about its models: each model's description and state, the
repository index, readiness and the signature facts a protocol's metadata is made of.

A model's state comes from three places: the registry (what it is), the store (whether real
weights are there, or the entry is broken, through `StoreIndex`) and the engines (loaded, its
backend, layout and execution, or why its load failed). `ModelStatus.to_dict` is REST's
description of a model (`GET /models`, `GET /models/{name}`); `index` is the repository index
every protocol lists (OIP's RepositoryIndex: READY or UNAVAILABLE and why); `signature` is
what a model takes and gives, from which the OIP adapters write their metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from model_store.outputs import features_dim
from model_store.repository import (
    BROKEN,
    FINE_TUNED,
    MISSING,
    BrokenStoreEntry,
    StoredModel,
    StoreEntry,
)
from model_store.specs import ModelSpec
from service.core.config import ServingConfig
from service.core.crops import decode_sides
from service.core.engines import Engine, Engines
from service.core.specs import UserModel
from service.core.stored import StoreIndex

READY, UNAVAILABLE = "READY", "UNAVAILABLE"


@dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    entry: StoreEntry | None  # None: not in the store
    engine: Engine | None  # None: not loaded
    load_error: str | None
    user: UserModel | None = None  # a fine-tuned model's classes and backbone

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def weights(self) -> str:
        if self.engine is not None:
            return self.engine.weights_status
        return self.entry.status if self.entry else MISSING

    @property
    def ready(self) -> bool:
        return self.engine is not None

    def to_dict(self) -> dict[str, Any]:
        spec, engine = self.spec, self.engine
        published = spec.published
        record = engine.stored.record if engine else {}
        return {
            "name": spec.name,
            "family": spec.family,
            "paper": spec.paper,
            "input": {"size": spec.input.size, "resize": spec.input.resize,
                      "interpolation": spec.input.interpolation, "mean": spec.input.mean,
                      "std": spec.input.std, "channels": spec.input.channels,
                      # The shorter side photos are decoded for, per crop scheme: what a
                      # client may shrink a photo to without changing the answer.
                      "decode_sides": decode_sides(spec.input)},
            "labels": spec.labels,
            "num_classes": spec.num_classes,
            "ladder": spec.ladder,
            "published": None if published is None else {
                "top1": published.top1, "top5": published.top5, "params_m": published.params_m,
                "mult_adds_m": published.mult_adds_m, "source": published.source},
            "weights": self.entry.status if self.entry else MISSING,
            # What is wrong with a broken store entry (no filesystem paths).
            "store_error": self.entry.error if self.entry else None,
            "loaded": engine is not None,
            "ready": engine is not None,
            "load_error": self.load_error,
            "backend": engine.backend.name if engine else None,
            "providers": list(engine.backend.providers) if engine else None,
            "layout": engine.layout.to_dict() if engine else None,
            # asked vs got: device, providers, precision, I/O binding, and why if less
            "execution": engine.backend.execution.to_dict() if engine else None,
            "computed": ({"params_m": record.get("params_m"),
                          "mult_adds_m": record.get("mult_adds_m")} if engine else None),
            # A user model's own: its class names (output order) and its backbone.
            "classes": list(self.user.classes) if self.user else None,
            "backbone": self.user.backbone if self.user else None,
        }


@dataclass(frozen=True)
class IndexEntry:
    """A model in the repository index: READY, or UNAVAILABLE and why."""

    name: str
    state: str
    reason: str = ""


@dataclass(frozen=True)
class Signature:
    """What a model takes and gives, and what it is: the facts of a protocol's metadata."""

    name: str
    platform: str  # the backend that runs it, or the configured one before it loads
    family: str
    labels: str
    num_classes: int
    input_size: int
    channels: int
    weights: str
    decode_sides: dict[str, int]  # per crop scheme, as in ModelStatus
    # The width of the features output; None when the stored graph has none (stored before
    # that output existed) or nothing is stored.
    features_dim: int | None = None


class Catalogue:
    def __init__(self, config: ServingConfig, engines: Engines, store_index: StoreIndex
                 ) -> None:
        self.config = config
        self.engines = engines
        self.store_index = store_index

    def status(self, name: str, entries: dict[str, StoreEntry] | None = None) -> ModelStatus:
        spec = self.engines.specs.spec(name)
        user = self.engines.specs.user(name)
        entries = self.store_index.entries() if entries is None else entries
        entry = StoreEntry(FINE_TUNED) if user else entries.get(name)
        return ModelStatus(spec, entry, self.engines.get(name),
                           self.engines.load_errors.get(name), user)

    def statuses(self) -> list[ModelStatus]:
        entries = self.store_index.entries()
        return [self.status(name, entries) for name in self.engines.specs.names()]

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        entries = []
        for status in self.statuses():
            entry = self._index_entry(status)
            if entry.state == READY or not ready_only:
                entries.append(entry)
        return entries

    def _index_entry(self, status: ModelStatus) -> IndexEntry:
        if status.ready:
            return IndexEntry(status.name, READY)
        if status.load_error:
            return IndexEntry(status.name, UNAVAILABLE, status.load_error)
        if status.entry is not None and status.entry.status == BROKEN:
            return IndexEntry(status.name, UNAVAILABLE, status.entry.error or "")
        if status.entry is None:
            return IndexEntry(status.name, UNAVAILABLE, "no weights in the model store")
        return IndexEntry(status.name, UNAVAILABLE,
                          "not loaded; loads on first request" if self.config.lazy_load
                          else "not loaded and lazy loading is off")

    def is_loaded(self, name: str) -> bool:
        """Whether `name` (a known model, else ModelNotFound) is loaded and serving."""
        self.engines.specs.spec(name)
        return self.engines.get(name) is not None

    def signature(self, name: str | None) -> Signature:
        """`name`'s signature; None means the default model."""
        spec = self.engines.specs.spec(name or self.config.default_model)
        engine = self.engines.get(spec.name)
        user = self.engines.specs.user(spec.name)
        stored = engine.stored if engine else self._stored(spec.name, user is not None)
        return Signature(
            name=spec.name,
            platform=engine.backend.name if engine else self.config.backend,
            family=spec.family, labels=spec.labels, num_classes=spec.num_classes,
            input_size=spec.input.size, channels=spec.input.channels,
            weights=(engine.weights_status if engine else FINE_TUNED if user
                     else self.store_index.status(spec.name)),
            decode_sides=decode_sides(spec.input),
            features_dim=features_dim(stored) if stored else None)

    def _stored(self, name: str, user_model: bool) -> StoredModel | None:
        """`name` as the repository holds it now (None: not there, or broken)."""
        repository = self.store_index.repository
        try:
            return repository.find_user_model(name) if user_model else repository.find(name)
        except BrokenStoreEntry:
            return None
