"""The finetune command: image folder and stored backbone in, a stored user model out.

1. Check the request before any work: the name, the backbone (stored, with real weights
   unless --allow-untrained, and with the `features` output), the folder's classes.
2. Embed every image once through the backbone's stored graph with its served
   preprocessing (and, for --unfreeze, keep the frozen stages' output too).
3. Split the readable images, stratified; embed K augmented views of each training image.
4. Fit the linear head on the training features; with --augment, once without the views
   and once with them, so the card reports both; with --unfreeze, train the last stages
   from that head.
5. Score the held-out split once, and store backbone plus head as one graph with its card.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_store import registry, store
from model_store.features import FinalLayer
from model_store.finetune import dataset, head
from model_store.finetune import unfreeze as deeper
from model_store.finetune.augment import Augmentation, ViewMaker, seeded
from model_store.finetune.embedding import StoredFeatures, run_pass
from model_store.finetune.errors import FinetuneError
from model_store.finetune.network import FineTunedNet
from model_store.finetune.stages import NoStages, stages_of
from model_store.finetune.user_models import check_new_name, user_model_spec
from model_store.outputs import has_features
from model_store.specs import ModelSpec
from model_store.transforms import preprocess

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
    record: dict[str, Any]

    @property
    def card(self) -> dict[str, Any]:
        return self.record["model_card"]


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


def _stored_backbone(options: FinetuneOptions) -> tuple[ModelSpec, store.StoredModel]:
    spec = registry.get(options.backbone)
    stored = store.find(spec.name)
    if stored is None:
        raise FinetuneError(f"backbone {spec.name} is not in the model store; run "
                            f"`python -m model_store pull {spec.name}`")
    if stored.weights_status != store.PRETRAINED and not options.allow_untrained:
        raise FinetuneError(
            f"backbone {spec.name} has {stored.weights_status} weights, not real ones: its "
            f"features mean nothing; pull its weights (`python -m model_store pull {spec.name}"
            "`) or pass --allow-untrained")
    if not has_features(stored):
        raise FinetuneError(
            f"backbone {spec.name} was stored before graphs had a features output; re-import "
            f"it: `python -m model_store pull {spec.name} --force`")
    return spec, stored


def _backbone_network(spec: ModelSpec, stored: store.StoredModel) -> torch.nn.Module:
    from safetensors.torch import load_file

    model = spec.build().eval()
    model.load_state_dict(load_file(str(stored.weights_path)), strict=True)
    return model


def _versions() -> dict[str, str]:
    # Module versions, not distribution names: onnxruntime ships as onnxruntime-gpu here.
    return {name: importlib.import_module(name).__version__ for name in RECORDED_VERSIONS}


def finetune(options: FinetuneOptions,
             log: Callable[[str], None] = _log_to_stderr) -> FinetuneResult:
    """Run the whole command; FinetuneError (bad input) before any long work where possible."""
    _check_options(options)
    check_new_name(options.name, options.force)
    spec, stored = _stored_backbone(options)
    clock = _Clock()
    started = time.perf_counter()
    final = FinalLayer(stored.record["features_layer"], int(stored.record["features_dim"]))
    folder = dataset.scan(options.data)
    dataset.check_class_sizes(folder, options.holdout, what="files")
    net = FineTunedNet(_backbone_network(spec, stored), final, len(folder.classes)).eval()
    split_at = None
    if options.unfreeze:
        try:
            stages = stages_of(spec, net.backbone)
            split_at = deeper.StageSplit(net, stages, options.unfreeze)
        except (NoStages, ValueError) as exc:
            raise FinetuneError(f"--unfreeze {options.unfreeze} on {spec.name}: {exc}") from None
    sinks = [StoredFeatures(stored)] + ([split_at.stage_inputs] if split_at else [])

    log(f"finetune {options.name}: {len(folder.files)} files in {len(folder.classes)} classes, "
        f"backbone {spec.name} ({stored.tag}, features {final.dim})")
    since = time.perf_counter()
    served = run_pass(folder.files, lambda image: [preprocess(image, spec.input)], sinks,
                      options.progress, "embedding")
    clock.time("embedding", since)
    kept = served.owners  # one view per readable file, in file order
    if len(kept) == 0:
        path, why = served.skipped[0]
        raise FinetuneError(f"--data {options.data}: none of the {len(folder.files)} files "
                            f"could be decoded as an image (e.g. {path}: {why})")
    dataset.check_class_sizes(folder, options.holdout, kept, what="readable images")
    labels = folder.labels[kept]
    train, held_out = dataset.split(labels, options.holdout, options.seed)
    features = served.outputs[0]
    k = len(folder.classes)

    since = time.perf_counter()
    plain_head = head.fit_head(features[train], labels[train], k)
    frozen_top1 = {"without_augment": head.top1(plain_head.logits(features[held_out]),
                                                 labels[held_out])}
    clock.time("head", since)
    train_features, train_labels, chosen = features[train], labels[train], plain_head
    train_stage_inputs = served.outputs[1][train] if split_at else None
    augmentation = Augmentation(options.augment, options.flip) if options.augment else None
    if augmentation:
        since = time.perf_counter()
        train_files = [folder.files[kept[i]] for i in train]
        with seeded(options.seed):
            views = run_pass(train_files, ViewMaker(augmentation, spec.input), sinks,
                             options.progress, f"augmenting x{options.augment}")
        clock.time("augment", since)
        train_features = np.concatenate([train_features, views.outputs[0]])
        train_labels = np.concatenate([train_labels, labels[train][views.owners]])
        if split_at:
            train_stage_inputs = np.concatenate([train_stage_inputs, views.outputs[1]])
        since = time.perf_counter()
        chosen = head.fit_head(train_features, train_labels, k)
        frozen_top1["with_augment"] = head.top1(chosen.logits(features[held_out]),
                                                labels[held_out])
        clock.time("head_augmented", since)
    net.set_head(chosen)

    unfreeze_card = None
    if split_at:
        settings = deeper.UnfreezeSettings(stages=options.unfreeze, epochs=options.epochs)
        since = time.perf_counter()
        losses = deeper.train(split_at, train_stage_inputs, train_labels, settings,
                                options.seed, options.progress)
        held_logits, _ = deeper.predict(split_at, served.outputs[1][held_out])
        clock.time("unfreeze", since)
        unfreeze_card = settings.describe() | {
            "trained_layers": split_at.trainable, "training_loss_per_epoch": losses}
    else:
        with torch.no_grad():  # the head as the graph computes it: float32, one Gemm
            held_logits = net.head(torch.from_numpy(features[held_out])).numpy()

    held_labels = labels[held_out]
    top1 = head.top1(held_logits, held_labels)
    correct = int((held_logits.argmax(axis=1) == held_labels).sum())
    skipped = [{"file": Path(p).relative_to(folder.root).as_posix(), "reason": why}
               for p, why in served.skipped]
    card = {
        "backbone": {"name": spec.name, "tag": stored.tag, "weights": stored.weights_status,
                     "features_layer": final.path, "features_dim": final.dim},
        "classes": list(folder.classes),
        "dataset": {
            "folder": str(options.data.resolve()),
            "digest": f"sha256:{dataset.digest(folder, kept.tolist())}",
            "digest_of": "each used file's class, path in the folder and sha256, in order",
            "images": len(kept),
            "per_class": folder.counts(kept),
            "skipped": {"count": len(skipped), "files": skipped[:SKIPPED_LISTED]},
        },
        "split": {"method": "stratified (scikit-learn train_test_split)",
                  "holdout": options.holdout, "seed": options.seed,
                  "train": len(train), "held_out": len(held_out)},
        "head": HEAD_KIND,
        "augmentation": augmentation.describe() if augmentation else None,
        "unfreeze": unfreeze_card,
        "held_out": {
            "top1": top1, "correct": correct, "total": len(held_labels),
            "confusion_matrix": head.confusion(held_logits, held_labels, k),
            "confusion_matrix_axes": "rows: true class, columns: predicted class, in "
                                     "`classes` order",
        },
        "frozen_backbone_top1": frozen_top1,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    since = time.perf_counter()
    user_spec = user_model_spec(options.name, spec, final.path, final.dim, k)
    tag = store.save(
        user_spec, net.state_dict(),
        {"source": "fine-tuned here", "backbone": stored.tag,
         "dataset_digest": card["dataset"]["digest"]},
        status=store.FINE_TUNED,
        extra={"backbone": spec.name, "classes": list(folder.classes), "model_card": card})
    clock.time("store", since)
    clock.time("total", started)
    log(f"stored {tag}: held-out top-1 {top1:.4f} ({correct}/{len(held_labels)}); "
        f"seconds {clock.seconds}")
    from model_store.finetune.user_models import find_user_model

    found = find_user_model(options.name)
    return FinetuneResult(tag, found.record if found else {"model_card": card})
