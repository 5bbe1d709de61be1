"""Checking and reading weights files: sha256 rules, digest pins, safe loading, conversion.

Every weight file is checked before anything is unpickled or loaded: against the publisher's
full sha256 when there is one, against torchvision's file-name prefix otherwise, and where
nothing is published the first file imported is pinned (its sha256 recorded in the store) so
that any later file for the same variant must match it. Loading never unpickles code:
`torch.load(weights_only=True)` or safetensors. Finding files (caches, downloads, mirrors) is
`model_store.acquire`'s job.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from model_store.home import resolve_store_home
from model_store.specs import ModelSpec, WeightSource

if TYPE_CHECKING:  # loading weights imports torch; checking digests does not
    import torch


class WeightsError(RuntimeError):
    """Weights could not be obtained or do not match what the variant expects."""


def state_home() -> Path:
    """Where ConvZoo keeps its own state beside BentoML's store (pins, download cache)."""
    path = resolve_store_home().path / "convzoo"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class PinFile:
    """sha256 digests first seen for variants whose publisher gives none."""

    def __init__(self, path: Path | None = None):
        self.path = path or state_home() / "pins.json"

    def read(self) -> dict[str, str]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, key: str) -> str | None:
        return self.read().get(key)

    def pin(self, key: str, digest: str) -> None:
        pins = self.read()
        pins[key] = digest
        self.path.write_text(json.dumps(pins, indent=2, sort_keys=True))


def verify_file(spec: ModelSpec, source: WeightSource, path: Path, pins: PinFile) -> dict:
    """Check `path` against what is known of `source`; returns the provenance record."""
    digest = sha256_of(path)
    pin_key = f"{spec.name}:{source.file_name}"
    if source.sha256:
        if digest != source.sha256:
            raise WeightsError(
                f"{path}: sha256 {digest} does not match the published {source.sha256} for "
                f"{spec.name} ({source.file_name}); the file is corrupt or not the right one"
            )
        check = "sha256 (published)"
    elif source.sha256_prefix:
        if not digest.startswith(source.sha256_prefix):
            raise WeightsError(
                f"{path}: sha256 {digest[:16]}... does not start with {source.sha256_prefix}, "
                f"the digest prefix in the published file name {source.file_name}; the file "
                "is corrupt or not the right one"
            )
        check = "sha256 prefix (published file name)"
    else:
        pinned = pins.get(pin_key)
        if pinned and pinned != digest:
            raise WeightsError(
                f"{path}: sha256 {digest} differs from {pinned}, pinned when {source.file_name} "
                f"was first imported for {spec.name}; refusing a different file"
            )
        check = "sha256 (pinned on first import)" if pinned else "sha256 pinned now (first seen)"
        pins.pin(pin_key, digest)
    return {"file": source.file_name, "sha256": digest, "check": check, "format": source.format}


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict from .safetensors or .pth/.pt, without unpickling code."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types
        raise WeightsError(
            f"{path}: not a loadable weights file ({type(exc).__name__}: {exc}); only plain "
            "state dicts are accepted (weights_only=True)"
        ) from None
    # Training checkpoints often wrap the state dict.
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    tensors_only = isinstance(loaded, dict) and all(
        isinstance(v, torch.Tensor) for v in loaded.values())
    if not tensors_only:
        raise WeightsError(f"{path}: does not contain a state dict of tensors")
    return loaded


def source_for_file(spec: ModelSpec, path: Path) -> WeightSource:
    """Which of the variant's weight sources a local file is: by its name, else its format."""
    for source in spec.weights:
        if source.file_name == path.name:
            return source
    suffix = path.suffix.lower()
    wanted = {".h5": ("keras-h5",), ".safetensors": ("timm", "trained-here")}.get(
        suffix, ("torchvision", "timm")
    )
    for source in spec.weights:
        if source.format in wanted:
            return source
    formats = ", ".join(f"{s.format} ({s.file_name})" for s in spec.weights)
    raise WeightsError(
        f"{path.name}: a {suffix or 'suffix-less'} file cannot be imported into {spec.name}; "
        f"it takes: {formats}"
    )


def convert(spec: ModelSpec, source: WeightSource, path: Path) -> dict[str, torch.Tensor]:
    """The file's weights as a state dict for `spec.build()`."""
    if source.format == "keras-h5":
        from model_store.converters import keras_h5

        return keras_h5.convert(path, spec)
    if source.format == "lite-package":
        from model_store.converters import lite_package

        return lite_package.convert(path, spec)
    return load_state_dict_file(path)
