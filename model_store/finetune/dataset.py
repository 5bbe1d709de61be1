"""The image folder a model is fine-tuned on: its classes, files, digest and split.

The layout is torchvision's ImageFolder: one subfolder of DIR per class, the subfolder's name
the label, every file under it (at any depth) one image. Hidden files and folders (a leading
dot) are ignored, and so are files directly in DIR. Classes are the subfolders' names in
sorted order, which fixes the model's output order; files are sorted by their path.

The split is scikit-learn's stratified `train_test_split` over the readable images, with the
held-out fraction and seed given. Within a class the images keep their sorted order, so a
folder whose files are named in dataset order (as `digits_folder` writes them) is split
exactly as `model_store.training.lenet5.held_out_split` splits the digits (stratified
shuffling depends only on each class's members in order): fine-tuned and from-scratch
figures are measured on the same held-out images.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_store.finetune.errors import FinetuneError
from model_store.weights import sha256_of


@dataclass(frozen=True)
class ImageFolder:
    root: Path
    classes: tuple[str, ...]
    files: tuple[Path, ...]  # absolute, sorted by (class, path within the class)
    labels: np.ndarray  # class index of each file

    def relative(self, index: int) -> str:
        return self.files[index].relative_to(self.root).as_posix()

    def counts(self, indices: Sequence[int] | None = None) -> dict[str, int]:
        chosen = self.labels if indices is None else self.labels[np.asarray(indices, int)]
        found = np.bincount(chosen, minlength=len(self.classes))
        return dict(zip(self.classes, (int(n) for n in found), strict=True))


def _hidden(name: str) -> bool:
    return name.startswith(".")


def scan(root: Path) -> ImageFolder:
    """The folder's classes and files; FinetuneError unless it has two classes with files."""
    if not root.is_dir():
        raise FinetuneError(f"--data {root}: not a folder (expected one subfolder per class)")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not _hidden(p.name))
    if len(class_dirs) < 2:
        found = ", ".join(p.name for p in class_dirs) or "none"
        raise FinetuneError(
            f"--data {root}: {len(class_dirs)} class folder(s) ({found}); a classifier needs at "
            "least two, one subfolder per class")
    files: list[Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        members = sorted(
            (p for p in class_dir.rglob("*")
             if p.is_file() and not any(_hidden(part) for part in p.relative_to(root).parts)),
            key=lambda p: p.relative_to(class_dir).as_posix())
        if not members:
            raise FinetuneError(f"--data {root}: class folder {class_dir.name!r} has no files")
        files.extend(members)
        labels.extend([label] * len(members))
    return ImageFolder(root, tuple(p.name for p in class_dirs), tuple(files),
                       np.asarray(labels, dtype=np.int64))


def min_images_per_class(holdout: float) -> int:
    """Images a class needs for the split to give it at least one held-out and one training
    image (stratified rounding gives a class of n about holdout x n held-out images)."""
    return max(2, math.ceil(1 / holdout - 1e-9), math.ceil(1 / (1 - holdout) - 1e-9))


def check_class_sizes(folder: ImageFolder, holdout: float, indices: Sequence[int] | None = None,
                      what: str = "files") -> None:
    """FinetuneError naming every class too small to split (`what`: files or readable images)."""
    need = min_images_per_class(holdout)
    small = {name: n for name, n in folder.counts(indices).items() if n < need}
    if small:
        listed = ", ".join(f"{name!r} has {n}" for name, n in small.items())
        raise FinetuneError(
            f"too few {what} to split: {listed}; holding out {holdout:g} needs at least {need} "
            "per class (one held out, one to train on)")


def split(labels: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) positions into `labels`, stratified."""
    from sklearn.model_selection import train_test_split

    train, held_out = train_test_split(np.arange(len(labels)), test_size=holdout,
                                       stratify=labels, random_state=seed)
    return np.sort(train), np.sort(held_out)


def digest(folder: ImageFolder, indices: Sequence[int]) -> str:
    """sha256 over each used file's label, path and content digest: the same images with the
    same labels give the same digest wherever the folder lies."""
    lines = hashlib.sha256()
    for index in indices:
        label = folder.classes[folder.labels[index]]
        lines.update(f"{label}\t{folder.relative(index)}\t{sha256_of(folder.files[index])}\n"
                     .encode())
    return lines.hexdigest()
