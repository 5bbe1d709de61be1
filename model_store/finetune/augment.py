"""Augmented training views: the seed's list, at the backbone's input size.

Each view is a random resized crop (mirroring/flipping, random cropping and colour shifting
are the seed's common methods: shared/seeds/004, "Data Augmentation"), taken from the decoded
image straight to the backbone's input size with its interpolation, then normalised as the
served input is (`model_store.transforms.to_model_input`). The settings are timm's ImageNet
training defaults (`transforms_imagenet_train`: aspect ratios 3/4 to 4/3, horizontal flip
with probability 0.5, colour jitter 0.4 on brightness, contrast and saturation), except the
crop's area: at least half the image, not timm's 8 %, because the seed asks for crops "large
enough to still contain important features" and a small labelled set has no views to waste.

Flips can be turned off: the seed recommends them where orientation does not matter, and
for digits or text it does (a mirrored 2 is no 2). Held-out images are never augmented.
Views are drawn from torch's generator seeded with the run's seed, so a run is repeatable.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from model_store.specs import InputSpec
from model_store.transforms import to_model_input

CROP_AREA = (0.5, 1.0)  # share of the image's area a crop covers
CROP_ASPECT = (3 / 4, 4 / 3)  # timm's default
FLIP_PROBABILITY = 0.5  # timm's default
COLOUR_JITTER = 0.4  # timm's default, for brightness, contrast and saturation


@dataclass(frozen=True)
class Augmentation:
    views: int  # extra views per training image
    flip: bool = True

    def describe(self) -> dict:
        return {"views_per_training_image": self.views, "random_resized_crop": {
            "area": list(CROP_AREA), "aspect": [round(a, 4) for a in CROP_ASPECT]},
            "horizontal_flip": FLIP_PROBABILITY if self.flip else 0.0,
            "colour_jitter": {"brightness": COLOUR_JITTER, "contrast": COLOUR_JITTER,
                              "saturation": COLOUR_JITTER}}


class ViewMaker:
    """Makes `augmentation.views` model inputs from one image, for one backbone's input."""

    def __init__(self, augmentation: Augmentation, spec: InputSpec):
        from torchvision import transforms

        self.augmentation = augmentation
        self.spec = spec
        steps = [transforms.RandomResizedCrop(
            spec.size, scale=CROP_AREA, ratio=CROP_ASPECT,
            interpolation=transforms.InterpolationMode(spec.interpolation))]
        if augmentation.flip:
            steps.append(transforms.RandomHorizontalFlip(FLIP_PROBABILITY))
        steps.append(transforms.ColorJitter(COLOUR_JITTER, COLOUR_JITTER, COLOUR_JITTER))
        self._transform = transforms.Compose(steps)

    def __call__(self, image: Image.Image) -> list[np.ndarray]:
        return [to_model_input(self._transform(image), self.spec)
                for _ in range(self.augmentation.views)]


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch's global generator (torchvision's transforms draw from it) seeded, then restored."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
