"""What the CLI does to one variant, as functions: pull, import a file, verify, prune.

Kept apart from argument parsing so tests and the service's start-up can call the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_store import registry, repository, store
from model_store.acquire import DEFAULT_FETCH, FetchOptions, acquire
from model_store.specs import ModelSpec, WeightSource
from model_store.weights import (
    PinFile,
    WeightsError,
    convert,
    sha256_of,
    source_for_file,
    verify_file,
)

FROM_PACKAGE = "registry package"
TRAINED_HERE = "trained here"
RANDOM_INIT = "random initialisation"


@dataclass(frozen=True)
class Pulled:
    tag: str
    found_in: str  # a cache's name, "downloaded", FROM_PACKAGE, TRAINED_HERE or RANDOM_INIT
    downloaded_bytes: int = 0


def pick_source(spec: ModelSpec, source_format: str | None = None) -> WeightSource:
    """The source `pull` takes: the one of `source_format`, else offline first, else a URL."""
    if source_format is not None:
        for source in spec.weights:
            if source.format == source_format:
                return source
        formats = ", ".join(s.format for s in spec.weights)
        raise WeightsError(f"{spec.name} has no {source_format} source; it has: {formats}")
    source = spec.offline_source or spec.download_source
    if source is None:
        raise WeightsError(f"{spec.name} has no weight source")
    return source


def pull(spec: ModelSpec, random_init: bool = False, source_format: str | None = None,
         fetch: FetchOptions = DEFAULT_FETCH) -> Pulled:
    """Get real weights for `spec` from `pick_source`'s source and store them."""
    if random_init:
        tag = store.save(
            spec, None, {"source": "random initialisation, explicitly requested (--random-init)"}
        )
        return Pulled(tag, RANDOM_INIT)
    source = pick_source(spec, source_format)
    if source.format == "trained-here":
        return Pulled(_train_and_store(spec, fetch.progress), TRAINED_HERE)
    if source.format == "lite-package":
        from model_store.converters.lite_package import package_file

        path = package_file(source.package)
        return Pulled(_import(spec, source, path, _verified(spec, source, path)), FROM_PACKAGE)
    got = acquire(spec, source, PinFile(), fetch)
    return Pulled(_import(spec, source, got.path, got.provenance), got.found_in,
                  got.downloaded_bytes)


def import_file(spec: ModelSpec, path: Path, source: WeightSource | None = None) -> str:
    """Verify, convert and store a local file (its source judged from its name if not given)."""
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    source = source or source_for_file(spec, path)
    return _import(spec, source, path, _verified(spec, source, path))


def _verified(spec: ModelSpec, source: WeightSource, path: Path) -> dict[str, Any]:
    provenance = verify_file(spec, source, path, PinFile())
    provenance.update(url=source.url, imported_from=str(path))
    return provenance


def _import(spec: ModelSpec, source: WeightSource, path: Path,
            provenance: dict[str, Any]) -> str:
    """Convert a verified file and store it."""
    return store.save(spec, convert(spec, source, path), provenance)


def _train_and_store(spec: ModelSpec, progress: bool) -> str:
    from model_store.training.lenet5 import train_lenet5

    state_dict, report = train_lenet5(progress=progress)
    return store.save(spec, state_dict, {"source": "trained here", "training": report})


def holds_real_weights(name: str) -> bool:
    return repository.stored_status().get(name) == repository.PRETRAINED


def prune(names: list[str], keep: int = 1, dry_run: bool = False) -> list[str]:
    """Delete all but the newest `keep` stored versions of each variant; returns their tags.

    The service loads `<name>:latest`, which pruning never touches (keep >= 1).
    """
    import bentoml

    if keep < 1:
        raise ValueError("prune keeps at least the newest version (--keep >= 1)")
    wanted = set(names) if names else set(registry.all_specs())
    for name in wanted:
        registry.get(name)  # unknown names fail loudly
    versions: dict[str, list] = {}
    for model in bentoml.models.list():
        if model.tag.name in wanted:
            versions.setdefault(model.tag.name, []).append(model)
    old = [model for found in versions.values()
           for model in sorted(found, key=lambda m: m.creation_time, reverse=True)[keep:]]
    tags = sorted(str(model.tag) for model in old)
    if not dry_run:
        for tag in tags:
            bentoml.models.delete(tag)
    return tags


def verify(name: str) -> dict[str, Any]:
    """Re-check a stored variant: file digests, strict load, ONNX vs PyTorch on real photos."""
    from safetensors.torch import load_file

    spec = registry.get(name)
    stored = repository.find(name)
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

