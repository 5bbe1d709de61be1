"""Resumable HTTP downloads into a `.part` file, with retries and a progress bar.

A download that breaks off keeps what it got; the next attempt (a retry, or the next run)
asks for the rest with an HTTP Range request. `If-Range` carries the validator (ETag, else
Last-Modified) of the first response, kept beside the part, so that a file changed on the
server in between is fetched whole instead of spliced; a part from a server that gave no
validator is not resumed by a later run. Connection errors, timeouts, short bodies and 408/429/5xx
answers are retried with exponential backoff; any other HTTP error fails at once. This module
knows nothing of models or digests: the caller verifies the finished `.part` file before
using it, and decides its final name.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model_store.weights import WeightsError

RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_USER_AGENT = "convzoo-model-store"


class DownloadError(WeightsError):
    """The file could not be fetched; a partial file, if any, is kept for resuming."""


@dataclass(frozen=True)
class Downloaded:
    part: Path  # the complete file, still under its .part name
    size: int
    fetched: int  # bytes transferred by this call (less than size when it resumed)
    resumed_from: int  # bytes already on disk when the call began


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 4
    backoff_s: float = 1.0  # first wait; doubled after each failed attempt
    max_backoff_s: float = 30.0
    timeout_s: float = 30.0  # per connection attempt and per read

    def wait_s(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))


class _Retry(Exception):
    """One attempt failed in a way worth another try."""


def _sidecar(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _validator(part: Path, url: str) -> str | None:
    try:
        saved = json.loads(_sidecar(part).read_text())
    except (OSError, ValueError):
        return None
    return saved.get("validator") if saved.get("url") == url else None


def fetch(url: str, part: Path, policy: RetryPolicy = RetryPolicy(), progress: bool = True,
          on_bytes: Callable[[int], None] | None = None) -> Downloaded:
    """Download `url` into `part`, resuming whatever `part` already holds."""
    from tqdm import tqdm

    part.parent.mkdir(parents=True, exist_ok=True)
    resumed_from = part.stat().st_size if part.exists() else 0
    if resumed_from and _validator(part, url) is None:
        # A part from another URL, or with no validator: its bytes cannot be trusted to
        # continue this one.
        part.unlink()
        resumed_from = 0
    fetched = 0
    # tqdm(disable=None) draws only on a terminal; callers print totals themselves.
    with tqdm(unit="B", unit_scale=True, desc=part.name.removesuffix(".part"),
              disable=None if progress else True, leave=False) as bar:

        def count(n: int) -> None:
            nonlocal fetched
            fetched += n
            bar.update(n)
            if on_bytes:
                on_bytes(n)

        attempt = 0
        while True:
            try:
                size = _attempt(url, part, policy.timeout_s, bar, count)
                _sidecar(part).unlink(missing_ok=True)
                return Downloaded(part, size, fetched, resumed_from)
            except _Retry as reason:
                attempt += 1
                if attempt > policy.retries:
                    kept = part.stat().st_size if part.exists() else 0
                    raise DownloadError(
                        f"{url}: {reason.args[0]} (gave up after {attempt} attempts"
                        + (f"; {kept} bytes kept in {part}, the next run resumes from there)"
                           if kept else ")")
                    ) from None
                time.sleep(policy.wait_s(attempt))


def _attempt(url: str, part: Path, timeout_s: float, bar, count: Callable[[int], None]) -> int:
    """One request; returns the complete size, or raises _Retry / DownloadError."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
        validator = _validator(part, url)
        if validator:
            headers["If-Range"] = validator
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=timeout_s) as response:
            start, total = _body_range(response, have)
            if start == 0:
                have = 0
            validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
            _sidecar(part).write_text(json.dumps({"url": url, "validator": validator}))
            bar.reset(total)
            bar.update(have)
            with open(part, "ab" if start else "wb") as out:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    count(len(block))
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:
            return _complete_after_416(error, part, have)
        if error.code in RETRYABLE_STATUS:
            raise _Retry(f"HTTP {error.code} {error.reason}") from None
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _Retry(f"{type(error).__name__}: {getattr(error, 'reason', error)}") from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise _Retry(f"connection closed after {size} of {total} bytes")
    return size


def _body_range(response, have: int) -> tuple[int, int | None]:
    """(offset the body starts at, complete size or None) for a 200 or 206 answer."""
    length = response.headers.get("Content-Length")
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if match is None or int(match[1]) != have:
            raise _Retry(f"the server answered a range request with Content-Range "
                         f"{response.headers.get('Content-Range')!r}")
        return have, None if match[3] == "*" else int(match[3])
    # 200: the whole file (the server ignored Range, or If-Range said the file changed).
    return 0, int(length) if length is not None else None


def _complete_after_416(error: urllib.error.HTTPError, part: Path, have: int) -> int:
    """A range past the end: done if the part already holds the whole file."""
    match = re.fullmatch(r"bytes \*/(\d+)", error.headers.get("Content-Range", ""))
    if match and int(match[1]) == have:
        return have
    part.unlink()  # longer than the file now on the server: start over
    raise _Retry("the partial file does not fit the server's file; starting over")


def content_length(url: str, timeout_s: float = 10.0) -> int | None:
    """The file's size from a HEAD request (redirects followed); None when not told.

    Raises OSError when the server cannot be reached at all, so that a caller probing many
    files can stop at the first such failure instead of waiting on each."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            length = response.headers.get("Content-Length")
    except urllib.error.HTTPError:
        return None  # reachable, but no size (404 on a mirror, a HEAD-less server)
    except (urllib.error.URLError, http.client.HTTPException) as error:
        raise OSError(str(getattr(error, "reason", error))) from None
    return int(length) if length and length.isdigit() else None
