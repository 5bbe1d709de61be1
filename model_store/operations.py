"""What the CLI does, as functions: pull, import from a file, verify.

Kept apart from argument parsing so tests and the service's start-up can call the same code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_store import registry, store
from model_store.specs import ModelSpec
from model_store.weights import (
    PinFile,
    WeightsError,
    convert,
    download,
    sha256_of,
    source_for_file,
    verify_file,
)


def pull(spec: ModelSpec, random_init: bool = False, progress: bool = True) -> str:
    """Get real weights for `spec` (offline source first, else download) and store them."""
    if random_init:
        return store.save(
            spec, None, {"source": "random initialisation, explicitly requested (--random-init)"}
        )
    offline = spec.offline_source
    if offline is not None and offline.format == "trained-here":
        return _train_and_store(spec, progress)
    if offline is not None and offline.format == "lite-package":
        from model_store.converters.lite_package import package_file

        return _import(spec, offline, package_file(offline.package), progress)
    source = spec.download_source
    if source is None:
        raise WeightsError(f"{spec.name} has no weight source")
    return _import(spec, source, download(spec, source, progress), progress)


def import_file(spec: ModelSpec, path: Path, progress: bool = True) -> str:
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    return _import(spec, source_for_file(spec, path), path, progress)


def _import(spec: ModelSpec, source, path: Path, progress: bool) -> str:
    provenance = verify_file(spec, source, path, PinFile())
    provenance["url"] = source.url
    provenance["imported_from"] = str(path)
    state_dict = convert(spec, source, path)
    return store.save(spec, state_dict, provenance)


def _train_and_store(spec: ModelSpec, progress: bool) -> str:
    from model_store.training.lenet5 import train_lenet5

    state_dict, report = train_lenet5(progress=progress)
    return store.save(spec, state_dict, {"source": "trained here", "training": report})


def verify(name: str) -> dict[str, Any]:
    """Re-check a stored variant: file digests, strict load, ONNX vs PyTorch on real photos."""
    from safetensors.torch import load_file

    spec = registry.get(name)
    stored = store.find(name)
    if stored is None:
        raise WeightsError(
            f"{name} is not in the model store; run `python -m model_store pull {name}`")
    for file_name, expected in stored.record["files"].items():
        actual = sha256_of(stored.path / file_name)
        if actual != expected:
            raise WeightsError(f"{name}: {file_name} has sha256 {actual}, stored as {expected}")
    model = spec.build().eval()
    model.load_state_dict(load_file(str(stored.weights_path)), strict=True)
    diff = store.check_parity(model, spec, stored.onnx_path)
    return {"name": name, "tag": stored.tag, "weights": stored.weights_status,
            "onnx_parity_max_abs_diff": diff, "files": "sha256 ok"}


def onnx_logits(stored: store.StoredModel, batch: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(stored.onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": batch})[0]


def torch_logits(spec: ModelSpec, stored: store.StoredModel, batch: np.ndarray) -> np.ndarray:
    from safetensors.torch import load_file

    model = spec.build().eval()
    model.load_state_dict(load_file(str(stored.weights_path)), strict=True)
    with torch.no_grad():
        return model(torch.from_numpy(batch)).numpy()
