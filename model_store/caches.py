"""Where a weights file may already be on this machine, looked at before any download.

In order: PyTorch's hub cache (`torch.hub.get_dir()/checkpoints`, which follows `TORCH_HOME`,
default `~/.cache/torch/hub`) for torchvision files; the Hugging Face cache for files on the
Hub (found by huggingface_hub itself, so `HF_HOME` and `HF_HUB_CACHE` apply); Keras' cache
(`$KERAS_HOME/models`, default `~/.keras/models`) for the Keras MobileNet files; then ConvZoo's
own download cache. This module only finds files: each one is verified by the caller like
any other, and a file that does not verify is never used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from model_store.sources import hub_file
from model_store.specs import ModelSpec, WeightSource
from model_store.weights import state_home

TORCH_HUB = "PyTorch hub cache"
HF_CACHE = "Hugging Face cache"
KERAS_CACHE = "Keras cache"
DOWNLOAD_CACHE = "ConvZoo download cache"
CACHE_NAMES = (TORCH_HUB, HF_CACHE, KERAS_CACHE, DOWNLOAD_CACHE)


@dataclass(frozen=True)
class CachedFile:
    path: Path
    cache: str  # which cache it was found in, for messages and provenance


def torch_hub_checkpoints() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def keras_models_dir() -> Path:
    # keras.utils.get_file keeps application weights in <keras home>/models.
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def download_cache_file(spec: ModelSpec, source: WeightSource) -> Path:
    """Where ConvZoo keeps a file it downloaded (per variant: timm files share one name)."""
    return state_home() / "downloads" / spec.name / source.file_name


def hugging_face_cached(source: WeightSource) -> Path | None:
    hub = hub_file(source)
    if hub is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub.repo_id, hub.filename, revision=hub.revision)
    # Besides a path or None it may return a marker: "known not to exist at this revision".
    return Path(found) if isinstance(found, str) else None


def cached_files(spec: ModelSpec, source: WeightSource) -> list[CachedFile]:
    """Every cached copy of `source`'s file on this machine, in the order to try them."""
    candidates: list[CachedFile] = []
    if source.format == "torchvision":
        candidates.append(CachedFile(torch_hub_checkpoints() / source.file_name, TORCH_HUB))
    in_hub_cache = hugging_face_cached(source)
    if in_hub_cache is not None:
        candidates.append(CachedFile(in_hub_cache, HF_CACHE))
    if source.format == "keras-h5":
        candidates.append(CachedFile(keras_models_dir() / source.file_name, KERAS_CACHE))
    candidates.append(CachedFile(download_cache_file(spec, source), DOWNLOAD_CACHE))
    return [c for c in candidates if c.path.is_file()]
