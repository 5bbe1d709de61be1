"""Pulling a set of variants (some names, a family, or all) with a plan and totals.

`pull` is idempotent: a variant whose real weights are already stored is skipped unless
`force` is set. Before anything is fetched the plan is printed (what is skipped, what comes
from a package, a cache or the network, and how many bytes are to be downloaded when there is
more than one file), and at the end the totals, whether or not a terminal shows the progress
bars. One variant's failure does not stop the others; each is reported.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from typing import TextIO

from model_store import caches, download, repository, sources
from model_store.acquire import DEFAULT_FETCH, DOWNLOADED, FetchOptions
from model_store.operations import (
    FROM_PACKAGE,
    RANDOM_INIT,
    TRAINED_HERE,
    Pulled,
    pick_source,
    pull,
)
from model_store.registry import UnknownModel
from model_store.specs import ModelSpec
from model_store.store import StoreError
from model_store.weights import WeightsError

DOWNLOAD = "download"
UNAVAILABLE = "with no source here"  # pull says why, variant by variant


@dataclass(frozen=True)
class Step:
    spec: ModelSpec
    origin: str  # where the weights will come from (FROM_PACKAGE, a cache, DOWNLOAD, ...)
    url: str | None = None  # for DOWNLOAD
    size: int | None = None  # bytes to download, when the server said


@dataclass
class PullTotals:
    stored: list[tuple[str, Pulled]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def downloaded_bytes(self) -> int:
        return sum(p.downloaded_bytes for _, p in self.stored)

    def line(self) -> str:
        downloads = [p for _, p in self.stored if p.found_in == DOWNLOADED]
        from_caches = [p for _, p in self.stored if p.found_in in caches.CACHE_NAMES]
        return (f"pull: {len(self.stored)} stored, {len(self.skipped)} skipped (already "
                f"stored), {len(self.failed)} failed; {len(downloads)} downloaded "
                f"({human_bytes(self.downloaded_bytes)}), {len(from_caches)} from caches; "
                f"{self.seconds:.1f} s")


def human_bytes(count: int | None) -> str:
    if count is None:
        return "size unknown"
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _weights_from(found_in: str) -> str:
    return {RANDOM_INIT: "random-init", DOWNLOADED: "downloaded", TRAINED_HERE: "trained here",
            FROM_PACKAGE: "from its registry package", UNAVAILABLE: UNAVAILABLE,
            }.get(found_in, f"from the {found_in}")


def already_stored(specs: list[ModelSpec], random_init: bool) -> set[str]:
    """Variants `pull` leaves alone: real weights stored (or anything, for --random-init)."""
    statuses = repository.stored_status()
    return {s.name for s in specs
            if statuses.get(s.name) == repository.PRETRAINED
            or (random_init and s.name in statuses)}


def plan(specs: list[ModelSpec], random_init: bool, source_format: str | None,
         fetch: FetchOptions) -> list[Step]:
    steps = []
    for spec in specs:
        if random_init:
            steps.append(Step(spec, RANDOM_INIT))
            continue
        try:
            source = pick_source(spec, source_format)
        except WeightsError:
            steps.append(Step(spec, UNAVAILABLE))
            continue
        if source.format in ("lite-package", "trained-here"):
            steps.append(Step(spec, FROM_PACKAGE if source.package else TRAINED_HERE))
            continue
        cached = caches.cached_files(spec, source)
        if cached:
            steps.append(Step(spec, cached[0].cache))
            continue
        try:
            url = sources.fetch_url(source, sources.mirror_base(fetch.mirror))
        except WeightsError:  # e.g. HF_HUB_OFFLINE
            steps.append(Step(spec, UNAVAILABLE))
            continue
        steps.append(Step(spec, DOWNLOAD, url))
    return _with_sizes(steps, fetch.policy.timeout_s)


def _with_sizes(steps: list[Step], timeout_s: float) -> list[Step]:
    """Download sizes from HEAD requests, only when there is a total worth showing."""
    if sum(1 for s in steps if s.url) < 2:
        return steps
    sized = []
    reachable = True
    for step in steps:
        if step.url and reachable:
            try:
                step = replace(step, size=download.content_length(step.url, timeout_s))
            except OSError:
                reachable = False  # no network: the downloads will say so, one by one
        sized.append(step)
    return sized


def describe(steps: list[Step], skipped: list[str]) -> str:
    counts: dict[str, int] = {}
    for step in steps:
        counts[step.origin] = counts.get(step.origin, 0) + 1
    parts = [f"{n} {_weights_from(origin)}" for origin, n in counts.items()
             if origin != DOWNLOAD]
    downloads = [s for s in steps if s.origin == DOWNLOAD]
    if downloads:
        known = [s.size for s in downloads if s.size is not None]
        size = human_bytes(sum(known)) if known else "size unknown"
        if known and len(known) < len(downloads):
            size += f" for {len(known)} of them"
        parts.append(f"{len(downloads)} to download ({size})")
    return (f"pull: {len(steps) + len(skipped)} variants: {len(skipped)} already stored "
            f"(--force re-imports)" + "".join(f", {p}" for p in parts))


def pull_many(specs: list[ModelSpec], *, force: bool = False, random_init: bool = False,
              source_format: str | None = None, fetch: FetchOptions = DEFAULT_FETCH,
              out: TextIO | None = None, err: TextIO | None = None) -> PullTotals:
    from tqdm import tqdm

    out, err = out or sys.stdout, err or sys.stderr
    started = time.monotonic()
    totals = PullTotals()
    skip = set() if force else already_stored(specs, random_init)
    totals.skipped = [s.name for s in specs if s.name in skip]
    steps = plan([s for s in specs if s.name not in skip], random_init, source_format, fetch)
    print(describe(steps, totals.skipped), file=out, flush=True)
    for name in totals.skipped:
        print(f"skipped {name}: already stored", file=out)
    sizes = [s.size for s in steps if s.size is not None]
    show_total = fetch.progress and len(sizes) > 1
    with tqdm(total=sum(sizes), unit="B", unit_scale=True, desc="total",
              disable=None if show_total else True) as overall:
        fetch = replace(fetch, on_bytes=overall.update)
        for step in steps:
            print(f"pulling {step.spec.name} ({step.url or step.origin}) ...", file=err,
                  flush=True)
            try:
                pulled = pull(step.spec, random_init, source_format, fetch)
            except (WeightsError, StoreError, UnknownModel, ValueError) as error:
                totals.failed[step.spec.name] = str(error)
                print(f"error: {step.spec.name}: {error}", file=err, flush=True)
                continue
            totals.stored.append((step.spec.name, pulled))
            print(f"stored {pulled.tag} ({_weights_from(pulled.found_in)})", file=out,
                  flush=True)
    totals.seconds = time.monotonic() - started
    print(totals.line(), file=out, flush=True)
    return totals
