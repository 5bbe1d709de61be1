"""What a model variant *is*, as frozen data.

A `ModelSpec` names the builder, the input contract (size, resize, crop, interpolation,
mean/std — these travel with the weights, as in timm's pretrained configs), the label set,
where real weights come from and what was published about the variant. Nothing here loads
or downloads anything; `model_store.weights` and `model_store.store` act on these records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # building a model imports torch; describing one does not
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Inception/TF-style models scale pixels to [-1, 1].
HALF = (0.5, 0.5, 0.5)

IMAGENET_1K = "imagenet-1k"
DIGITS = "digits"


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the model's input tensor (N, C, size, size).

    The shorter side is resized to `resize`, then the centre `size` x `size` is cropped,
    then pixels are scaled to [0, 1] and normalised with `mean`/`std`.
    """

    size: int
    resize: int
    interpolation: str = "bilinear"  # "bilinear" | "bicubic" | "nearest"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    grayscale: bool = False

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3


@dataclass(frozen=True)
class Published:
    """Figures published for a variant, with where they were published."""

    source: str
    top1: float | None = None  # ImageNet top-1 accuracy, percent
    top5: float | None = None
    params_m: float | None = None  # millions of parameters
    mult_adds_m: float | None = None  # millions of multiply-adds per image
    note: str = ""  # how a published figure differs from ours, where it does


@dataclass(frozen=True)
class WeightSource:
    """One place real weights for a variant can come from.

    `format` selects the converter (see `model_store.converters`). `url` is where the file
    is published; `sha256` is its full digest when the publisher gives it, `sha256_prefix`
    the digest prefix torchvision encodes in its file names. Where neither is known offline
    the first imported file's digest is pinned locally (`model_store.weights.PinFile`).
    """

    format: str  # "torchvision" | "timm" | "keras-h5" | "lite-package" | "trained-here"
    file_name: str
    url: str | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None
    package: str | None = None  # for "lite-package": the registry package that ships the file
    note: str = ""

    @property
    def offline(self) -> bool:
        """True when the weights can be obtained with no network but the package registry."""
        return self.format in ("lite-package", "trained-here")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    build: Callable[[], nn.Module] = field(repr=False, compare=False)
    input: InputSpec
    labels: str
    weights: tuple[WeightSource, ...]
    published: Published | None
    paper: str
    num_classes: int = 1000
    # Position on the family's accuracy/latency ladder (e.g. alpha and rho for MobileNet v1).
    ladder: dict[str, float] = field(default_factory=dict, compare=False)
    embedded_default: bool = False  # imported by `pull` with no names / `make serve`
    # State-dict key prefixes of training-only heads (GoogLeNet's auxiliary classifiers) that
    # published files carry but inference never uses: dropped on import.
    training_only_weights: tuple[str, ...] = ()

    @property
    def offline_source(self) -> WeightSource | None:
        return next((w for w in self.weights if w.offline), None)

    @property
    def download_source(self) -> WeightSource | None:
        return next((w for w in self.weights if w.url), None)
