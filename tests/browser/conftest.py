"""The page at `/` in a real browser: Chromium from the Debian packages, driven headless by
Playwright's Python package against a real ConvZoo server on loopback.

Playwright launches the system Chromium by its path; its own browser download is never used.
Tests skip, saying why, only where Chromium is not installed (`.ci/run` installs it; see
tests/fixtures/system_tools.py). Every page a test opens records its requests and its script
errors: at the end of each test, no request may have gone to a host other than the service
and no script may have failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.fixtures.system_tools import tool_or_skip
from tools.launch import ROOT, LiveServer, start_server, stop_server

CHROMIUM = os.environ.get("CONVZOO_CHROMIUM", "/usr/bin/chromium")
# Headless, and nothing the browser would fetch on its own (updates, sync, QUIC probes).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# Every wait is bounded; the first selection of a family loads and profiles its variants.
WAIT_MS = 120_000
VIEWPORT = {"width": 1280, "height": 900}
# Linked into the browser server's store from the checkout's (`make models` imports them).
REAL_MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


@pytest.fixture(scope="module")
def browser():
    chromium = tool_or_skip(CHROMIUM, "chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS,
                                              timeout=60_000)
        yield launched
        launched.close()


@dataclass
class PageLog:
    """What a page did: its requests (Playwright's Request objects) and its script errors."""

    requests: list = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [request.url for request in self.requests]

    def foreign(self, origin: str) -> list[str]:
        """URLs not served by `origin`; blob: URLs are in-page memory, named by their origin."""
        wanted = urlsplit(origin)
        foreign = []
        for url in self.urls:
            if url.startswith("data:"):
                continue
            parts = urlsplit(url.removeprefix("blob:"))
            if (parts.scheme, parts.netloc) != (wanted.scheme, wanted.netloc):
                foreign.append(url)
        return foreign


def failed_load(status: int) -> str:
    """How Chromium's console reports a response with an error status."""
    return f"Failed to load resource: the server responded with a status of {status}"


@contextmanager
def open_page(browser, server: LiveServer, allowed_statuses: tuple[int, ...] = ()
              ) -> Iterator[tuple[object, PageLog]]:
    """A fresh browser context and page on `server`, recorded; checked when the block ends.

    `allowed_statuses`: error statuses the test expects (401 before a key is given), whose
    console reports are not counted as the page's errors."""
    context = browser.new_context(viewport=VIEWPORT, base_url=server.http_url)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    log = PageLog()
    expected = tuple(failed_load(status) for status in allowed_statuses)

    def console(message) -> None:
        if message.type == "error" and not message.text.startswith(expected):
            log.errors.append(f"console: {message.text}")

    page.on("request", lambda request: log.requests.append(request))
    page.on("pageerror", lambda error: log.errors.append(f"uncaught: {error}"))
    page.on("console", console)
    try:
        yield page, log
    finally:
        context.close()
    foreign = log.foreign(server.http_url)
    assert not foreign, f"requests left the service: {foreign}"
    assert not log.errors, f"the page reported errors: {log.errors}"


def run_model_store(home: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "model_store", *args], cwd=ROOT, check=True,
                   env={**os.environ, "BENTOML_HOME": str(home)}, capture_output=True,
                   timeout=600)


@contextmanager
def serving(workdir: Path, config: dict, home: Path | None = None) -> Iterator[LiveServer]:
    """A real server for the block, on the store of `home` (default: the checkout's)."""
    with pytest.MonkeyPatch.context() as patch:
        if home is not None:
            patch.setenv("BENTOML_HOME", str(home))
        server = start_server(workdir, config, check_store=home is None)
    try:
        yield server
    finally:
        stop_server(server)


def store_with_random_init_lenet(home: Path) -> Path:
    """A BentoML home whose store holds the real EfficientNet-Lite0..2, linked from the
    checkout's store, and a random-init LeNet-5 imported here, so that the page has a model
    whose answers carry the random-init warning."""
    real = Path(os.environ["BENTOML_HOME"]).resolve() / "models"
    missing = [name for name in REAL_MODELS if not (real / name).is_dir()]
    if missing:
        raise RuntimeError(f"models {missing} are not in the store; run `make models` first")
    (home / "models").mkdir(parents=True)
    for name in REAL_MODELS:
        (home / "models" / name).symlink_to(real / name, target_is_directory=True)
    run_model_store(home, "pull", "lenet5", "--random-init")
    return home
