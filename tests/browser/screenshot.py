"""The README's picture of the page at `/`: a real server, the chelsea cat classified through
the page in headless Chromium (as the browser tests do), the top of the page captured and
saved as a small palette PNG.

    python -m tests.browser.screenshot docs/front_door.png

BENTOML_HOME must hold the embedded default models (`make models`).
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, serving
from tests.conftest import encode

CONFIG = {"default_model": "efficientnet_lite0", "startup_models": ["efficientnet_lite0"]}
VIEWPORT = {"width": 1200, "height": 860}
COLOURS = 160  # keeps the photo recognisable in well under 150 KB


def capture(url: str, photo: bytes) -> bytes:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(WAIT_MS)
            page.goto(url + "/")
            page.wait_for_selector("#zoo-table tbody tr")
            page.set_input_files("#photo", files=[{"name": "chelsea.jpg",
                                                   "mimeType": "image/jpeg", "buffer": photo}])
            page.wait_for_selector("#result[data-run='1'][data-status=done]")
            # Shown after a second run: the first pays for the model's first batch.
            page.click("#run")
            page.wait_for_selector("#result[data-run='2'][data-status=done]")
            return page.screenshot()
        finally:
            browser.close()


def small_png(screenshot: bytes) -> bytes:
    image = Image.open(io.BytesIO(screenshot)).convert("RGB")
    palette = image.quantize(colors=COLOURS, method=Image.Quantize.MEDIANCUT,
                             dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    from skimage import data

    with tempfile.TemporaryDirectory() as workdir, serving(Path(workdir), CONFIG) as server:
        png = small_png(capture(server.http_url, encode(data.chelsea(), "JPEG", quality=95)))
    args.output.write_bytes(png)
    print(f"{args.output}: {len(png) // 1024} KB")


if __name__ == "__main__":
    main()
