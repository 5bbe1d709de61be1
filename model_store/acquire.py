"""A verified weights file for one source: from a cache on this machine, else downloaded.

Each cached copy (`model_store.caches`) is checked with `verify_file` like any other file; one
that does not match is refused, named with its path, and the next place is tried. A download
lands in a `.part` file and is verified before it takes its final name in ConvZoo's download
cache, so a failed or mismatched download never reaches the converter or the model store:
a broken-off one is kept for resuming, a mismatched one is deleted.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_store import caches, download, sources
from model_store.specs import ModelSpec, WeightSource
from model_store.weights import PinFile, WeightsError, verify_file

DOWNLOADED = "downloaded"


@dataclass(frozen=True)
class FetchOptions:
    mirror: str | None = None  # base URL; None: CONVZOO_WEIGHTS_MIRROR, if set
    policy: download.RetryPolicy = download.RetryPolicy()
    progress: bool = True
    on_bytes: Callable[[int], None] | None = None  # every byte received, for a total bar
    warn: Callable[[str], None] = field(default=lambda text: print(text, file=sys.stderr,
                                                                   flush=True))


DEFAULT_FETCH = FetchOptions()


@dataclass(frozen=True)
class Acquired:
    path: Path
    found_in: str  # a cache's name, or DOWNLOADED
    provenance: dict[str, Any]
    downloaded_bytes: int = 0


def acquire(spec: ModelSpec, source: WeightSource, pins: PinFile,
            options: FetchOptions = DEFAULT_FETCH) -> Acquired:
    refused: list[str] = []
    for cached in caches.cached_files(spec, source):
        try:
            provenance = verify_file(spec, source, cached.path, pins)
        except WeightsError as error:
            refused.append(f"refused {cached.path} ({cached.cache}): {error}")
            options.warn(refused[-1])
            continue
        provenance.update(url=source.url, found_in=cached.cache, imported_from=str(cached.path))
        return Acquired(cached.path, cached.cache, provenance)
    try:
        return _download(spec, source, pins, options)
    except WeightsError as error:
        raise WeightsError("\n".join([str(error), *refused])) from None


def _download(spec: ModelSpec, source: WeightSource, pins: PinFile,
              options: FetchOptions) -> Acquired:
    mirror = sources.mirror_base(options.mirror)
    url = sources.fetch_url(source, mirror)
    target = caches.download_cache_file(spec, source)
    part = target.with_name(target.name + ".part")
    try:
        got = download.fetch(url, part, options.policy, options.progress, options.on_bytes)
    except download.DownloadError as error:
        raise WeightsError(_offline_help(spec, source, url, error)) from None
    try:
        provenance = verify_file(spec, source, got.part, pins)
    except WeightsError as error:
        got.part.unlink()
        raise WeightsError(f"downloaded from {url}, then refused: {error}; the file was "
                           "deleted and nothing was stored") from None
    got.part.replace(target)
    provenance.update(url=source.url, fetched_from=url, found_in=DOWNLOADED,
                      imported_from=str(target))
    return Acquired(target, DOWNLOADED, provenance, got.fetched)


def _offline_help(spec: ModelSpec, source: WeightSource, url: str, error: Exception) -> str:
    return (
        f"could not download {url} for {spec.name}: {error}.\n"
        f"If this machine cannot reach it, fetch the file elsewhere (e.g. `curl -L -o "
        f"{source.file_name} {source.url}`), copy it here and run:\n"
        f"  python -m model_store import {spec.name} --from-file {source.file_name}\n"
        f"or point {sources.MIRROR_ENV} at a mirror that holds it (README, Models and weights)"
    )
