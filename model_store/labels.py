"""The class names of each label set, from data files in the package (no torch).

`imagenet-1k`: the 1,000 ImageNet-1k class names in index order, as torchvision ships them with
its weights records (extracted into `model_store/data/imagenet-1k.txt` by
`model_store.torchvision_data`); `digits`: "0" to "9" (LeNet-5 on scikit-learn's digits).
"""

from __future__ import annotations

from functools import cache

from model_store.specs import DIGITS, IMAGENET_1K
from model_store.torchvision_data import LABELS_FILE


@cache
def label_names(label_set: str) -> tuple[str, ...]:
    if label_set == DIGITS:
        return tuple(str(d) for d in range(10))
    if label_set == IMAGENET_1K:
        return tuple(LABELS_FILE.read_text().splitlines())
    raise ValueError(f"unknown label set {label_set!r}")
