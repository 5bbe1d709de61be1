"""The finetune command: image folder and stored backbone in, a stored user model out.

1. Check the request before any work: the name, the backbone (stored, with real weights
   unless --allow-untrained, and with the `features` output), the folder's classes.
2. Embed every image once through the backbone's stored graph with its served
   preprocessing (for --unfreeze, through the backbone exported for the run with the frozen
   stages' output as a second output, to train on).
3. Split the readable images, stratified; embed K augmented views of each training image.
4. Fit the linear head on the training features; with --augment, once without the views
   and once with them, so the card reports both; with --unfreeze, train the last stages
   from that head.
5. Score the held-out split once, and store backbone plus head as one graph with its card.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_store import registry, repository, store
from model_store.features import FinalLayer
from model_store.finetune import dataset, head
from model_store.finetune import unfreeze as deeper
from model_store.finetune.augment import Augmentation, ViewMaker, seeded
from model_store.finetune.embedding import Sink, StoredFeatures, run_pass
from model_store.finetune.errors import FinetuneError
from model_store.finetune.network import FineTunedNet
from model_store.finetune.stages import NoStages, stages_of
from model_store.finetune.user_models import check_new_name, user_model_spec
from model_store.outputs import has_features
from model_store.specs import ModelSpec
from model_store.transforms import preprocess
from model_store.weights import sha256_of

HEAD_KIND = ("multinomial logistic regression (scikit-learn, L-BFGS, C=1) on standardised "
             "features, folded into one linear layer")
SKIPPED_LISTED = 20  # the card names this many skipped files, and counts them all
# The libraries whose versions decide the figures: decoding and preprocessing, the embedding
# pass, the head, the unfrozen training.
RECORDED_VERSIONS = ("PIL", "numpy", "onnxruntime", "sklearn", "torch", "timm")


@dataclass(frozen=True)
class FinetuneOptions:
    name: str
    backbone: str
    data: Path
    holdout: float = 0.2
    seed: int = 0
    augment: int = 0
    flip: bool = True
    unfreeze: int = 0
    epochs: int = deeper.DEFAULT_EPOCHS
    allow_untrained: bool = False
    force: bool = False
    progress: bool = True


@dataclass(frozen=True)
class FinetuneResult:
    tag: str
    card: dict[str, Any]  # the stored model card (convzoo.json's "model_card")


@dataclass
class _Clock:
    seconds: dict[str, float] = field(default_factory=dict)

    def time(self, stage: str, since: float) -> None:
        self.seconds[stage] = round(time.perf_counter() - since, 2)


def _log_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_options(options: FinetuneOptions) -> None:
    if not 0 < options.holdout < 1:
        raise FinetuneError(f"--holdout {options.holdout:g}: give the held-out share of the "
                            "images, between 0 and 1 (e.g. 0.2)")
    if options.augment < 0:
        raise FinetuneError(f"--augment {options.augment}: give a number of extra views >= 0")
    if options.unfreeze < 0:
        raise FinetuneError(f"--unfreeze {options.unfreeze}: give a number of stages >= 0")
    if options.epochs < 1:
        raise FinetuneError(f"--epochs {options.epochs}: give at least one epoch")


def _stored_backbone(options: FinetuneOptions) -> tuple[ModelSpec, repository.StoredModel]:
    spec = registry.get(options.backbone)
    stored = repository.find(spec.name)
    if stored is None:
        raise FinetuneError(f"backbone {spec.name} is not in the model store; run "
                            f"`python -m model_store pull {spec.name}`")
    if stored.weights_status != repository.PRETRAINED and not options.allow_untrained:
        raise FinetuneError(
            f"backbone {spec.name} has {stored.weights_status} weights, not real ones: its "
            f"features mean nothing; pull its weights (`python -m model_store pull {spec.name}"
            "`) or pass --allow-untrained")
    if not has_features(stored):
        raise FinetuneError(
            f"backbone {spec.name} was stored before graphs had a features output; re-import "
            f"it: `python -m model_store pull {spec.name} --force`")
    for file_name, expected in stored.record["files"].items():
        if sha256_of(stored.path / file_name) != expected:
            raise FinetuneError(f"backbone {spec.name}: its stored {file_name} does not match "
                                f"its record (corrupt); re-import it: `python -m model_store "
                                f"pull {spec.name} --force`")
    return spec, stored


def _backbone_network(spec: ModelSpec, stored: repository.StoredModel) -> torch.nn.Module:
    from safetensors.torch import load_file

    model = spec.build().eval()
    model.load_state_dict(load_file(str(stored.weights_path)), strict=True)
    return model


def _versions() -> dict[str, str]:
    # Module versions, not distribution names: onnxruntime ships as onnxruntime-gpu here.
    return {name: importlib.import_module(name).__version__ for name in RECORDED_VERSIONS}


@dataclass
class _Embedded:
    """The readable images' served features (and stage inputs), split, plus training views."""

    kept: np.ndarray  # positions in the folder's files of the readable images
    labels: np.ndarray  # their class indices
    features: np.ndarray
    stage_inputs: np.ndarray | None
    skipped: list[tuple[Path, str]]
    train: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    held_out: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    view_features: np.ndarray | None = None  # augmented views of training images
    view_stage_inputs: np.ndarray | None = None
    view_labels: np.ndarray | None = None

    def training_set(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(features, labels, stage inputs) of the training images and their views."""
        features, labels = self.features[self.train], self.labels[self.train]
        stage_inputs = None if self.stage_inputs is None else self.stage_inputs[self.train]
        if self.view_features is None:
            return features, labels, stage_inputs
        if stage_inputs is not None:
            stage_inputs = np.concatenate([stage_inputs, self.view_stage_inputs])
        return (np.concatenate([features, self.view_features]),
                np.concatenate([labels, self.view_labels]), stage_inputs)


class _Run:
    """One finetune command, step by step (see the module docstring)."""

    def __init__(self, options: FinetuneOptions, log: Callable[[str], None], scratch: Path):
        self.options = options
        self.log = log
        self.scratch = scratch
        self.clock = _Clock()
        self.split_at: deeper.StageSplit | None = None

    def check(self) -> None:
        options = self.options
        _check_options(options)
        check_new_name(options.name, options.force)
        self.spec, self.stored = _stored_backbone(options)
        self.final = FinalLayer(self.stored.record["features_layer"],
                                int(self.stored.record["features_dim"]))
        self.folder = dataset.scan(options.data)
        dataset.check_class_sizes(self.folder, options.holdout, what="files")
        self.net = FineTunedNet(_backbone_network(self.spec, self.stored), self.final,
                                len(self.folder.classes)).eval()
        if options.unfreeze:
            try:
                stages = stages_of(self.spec, self.net.backbone)
                self.split_at = deeper.StageSplit(self.net, stages, options.unfreeze)
            except (NoStages, ValueError) as exc:
                raise FinetuneError(f"--unfreeze {options.unfreeze} on {self.spec.name}: "
                                    f"{exc}") from None
        self.sink: Sink = StoredFeatures(self.stored)
        if self.split_at:
            self.sink = self.split_at.export_frozen(
                self.spec.input.channels, self.spec.input.size, self.scratch / "backbone.onnx")

    def embed(self) -> _Embedded:
        options, folder, spec = self.options, self.folder, self.spec
        self.log(f"finetune {options.name}: {len(folder.files)} files in "
                 f"{len(folder.classes)} classes, backbone {spec.name} ({self.stored.tag}, "
                 f"features {self.final.dim})")
        since = time.perf_counter()
        served = run_pass(folder.files, lambda image: [preprocess(image, spec.input)],
                          self.sink, options.progress, "embedding")
        self.clock.time("embedding", since)
        kept = served.owners  # one view per readable file, in file order
        if len(kept) == 0:
            path, why = served.skipped[0]
            raise FinetuneError(f"--data {options.data}: none of the {len(folder.files)} files "
                                f"could be decoded as an image (e.g. {path}: {why})")
        dataset.check_class_sizes(folder, options.holdout, kept, what="readable images")
        embedded = _Embedded(kept, folder.labels[kept], served.outputs[0],
                             served.outputs[1] if self.split_at else None, served.skipped)
        embedded.train, embedded.held_out = dataset.split(embedded.labels, options.holdout,
                                                          options.seed)
        return embedded

    def augment(self, embedded: _Embedded, augmentation: Augmentation) -> None:
        since = time.perf_counter()
        train_files = [self.folder.files[embedded.kept[i]] for i in embedded.train]
        with seeded(self.options.seed):
            views = run_pass(train_files, ViewMaker(augmentation, self.spec.input), self.sink,
                             self.options.progress, f"augmenting x{augmentation.views}")
        self.clock.time("augment", since)
        if not len(views.owners):  # every training file decoded once already: not expected
            return
        embedded.view_features = views.outputs[0]
        embedded.view_labels = embedded.labels[embedded.train][views.owners]
        if self.split_at:
            embedded.view_stage_inputs = views.outputs[1]

    def fit(self, embedded: _Embedded) -> tuple[np.ndarray, dict[str, float], dict | None]:
        """Held-out logits of the model to store, frozen-backbone top-1s, unfreeze card."""
        k, held_out = len(self.folder.classes), embedded.held_out
        held_features, held_labels = embedded.features[held_out], embedded.labels[held_out]
        since = time.perf_counter()
        chosen = head.fit_head(embedded.features[embedded.train],
                               embedded.labels[embedded.train], k)
        frozen = {"without_augment": head.top1(chosen.logits(held_features), held_labels)}
        features, labels, stage_inputs = embedded.training_set()
        if embedded.view_features is not None:
            chosen = head.fit_head(features, labels, k)
            frozen["with_augment"] = head.top1(chosen.logits(held_features), held_labels)
        self.clock.time("head", since)
        self.net.set_head(chosen)
        if not self.split_at:
            with torch.no_grad():  # the head as the graph computes it: float32, one Gemm
                return self.net.head(torch.from_numpy(held_features)).numpy(), frozen, None
        settings = deeper.UnfreezeSettings(stages=self.options.unfreeze,
                                           epochs=self.options.epochs)
        since = time.perf_counter()
        losses = deeper.train(self.split_at, stage_inputs, labels, settings, self.options.seed,
                              self.options.progress)
        held_logits, _ = deeper.predict(self.split_at, embedded.stage_inputs[held_out])
        self.clock.time("unfreeze", since)
        return held_logits, frozen, settings.describe() | {
            "trained_layers": self.split_at.trainable, "training_loss_per_epoch": losses}

    def card(self, embedded: _Embedded, held_logits: np.ndarray, frozen: dict[str, float],
             unfreeze_card: dict | None, augmentation: Augmentation | None) -> dict[str, Any]:
        options, folder, k = self.options, self.folder, len(self.folder.classes)
        held_labels = embedded.labels[embedded.held_out]
        skipped = [{"file": Path(p).relative_to(folder.root).as_posix(), "reason": why}
                   for p, why in embedded.skipped]
        return {
            "backbone": {"name": self.spec.name, "tag": self.stored.tag,
                         "weights": self.stored.weights_status,
                         "features_layer": self.final.path, "features_dim": self.final.dim},
            "classes": list(folder.classes),
            "dataset": {
                "folder": str(options.data.resolve()),
                "digest": f"sha256:{dataset.digest(folder, embedded.kept.tolist())}",
                "digest_of": "each used file's class, path in the folder and sha256, in order",
                "images": len(embedded.kept),
                "per_class": folder.counts(embedded.kept),
                "skipped": {"count": len(skipped), "files": skipped[:SKIPPED_LISTED]},
            },
            "split": {"method": "stratified (scikit-learn train_test_split)",
                      "holdout": options.holdout, "seed": options.seed,
                      "train": len(embedded.train), "held_out": len(embedded.held_out)},
            "head": HEAD_KIND,
            "augmentation": augmentation.describe() if augmentation else None,
            "unfreeze": unfreeze_card,
            "held_out": {
                "top1": head.top1(held_logits, held_labels),
                "correct": int((held_logits.argmax(axis=1) == held_labels).sum()),
                "total": len(held_labels),
                "confusion_matrix": head.confusion(held_logits, held_labels, k),
                "confusion_matrix_axes": "rows: true class, columns: predicted class, in "
                                         "`classes` order",
            },
            "frozen_backbone_top1": frozen,
            "seconds": dict(self.clock.seconds),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": _versions(),
        }

    def save(self, card: dict[str, Any]) -> str:
        since = time.perf_counter()
        user_spec = user_model_spec(self.options.name, self.spec, self.final.path,
                                    self.final.dim, len(self.folder.classes))
        tag = store.save(
            user_spec, self.net.state_dict(),
            {"source": "fine-tuned here", "backbone": self.stored.tag,
             "dataset_digest": card["dataset"]["digest"]},
            status=repository.FINE_TUNED,
            extra={"backbone": self.spec.name, "classes": card["classes"], "model_card": card})
        self.clock.time("store", since)
        return tag


def finetune(options: FinetuneOptions,
             log: Callable[[str], None] = _log_to_stderr) -> FinetuneResult:
    """Run the whole command; bad input raises FinetuneError, before any long work where the
    input allows (unreadable images are only known once decoded)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="convzoo-finetune-") as scratch:
        run = _Run(options, log, Path(scratch))
        run.check()
        embedded = run.embed()
        augmentation = Augmentation(options.augment, options.flip) if options.augment else None
        if augmentation:
            run.augment(embedded, augmentation)
        held_logits, frozen, unfreeze_card = run.fit(embedded)
        card = run.card(embedded, held_logits, frozen, unfreeze_card, augmentation)
        tag = run.save(card)
    held = card["held_out"]
    run.clock.time("total", started)
    log(f"stored {tag}: held-out top-1 {held['top1']:.4f} ({held['correct']}/{held['total']});"
        f" seconds {run.clock.seconds}")
    return FinetuneResult(tag, card)
