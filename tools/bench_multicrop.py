"""What multi-crop costs: median latency of N-crop against 1-crop requests, in-process.

Runs a real `DataPlane` (the served configuration, `service/config.yaml` or
`CONVZOO_CONFIG`, with only the benchmarked model loaded) and sends scikit-image's chelsea
through `DataPlane.multicrop` one request at a time, so each figure is one request's
whole path (decode, crops, batcher, ONNX Runtime, averaging) with nothing else competing.
The 10-crop request's crops run as one batch, so its cost is one bigger batch, not ten
requests.

    python -m tools.bench_multicrop [--model efficientnet_lite0] [--n 20] [--schemes 1,10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from tools import photos

WARM_UP = 3


def chelsea_jpeg() -> bytes:
    return photos.jpeg("chelsea", quality=95)


async def measure(plane: Any, model: str, image: bytes, crops: int, n: int
                  ) -> dict[str, float]:
    """Median wall-clock and inference milliseconds of n sequential requests after warm-up."""
    from service.core.requests import MulticropRequest

    request = MulticropRequest(images=(image,), model=model, crops=crops)
    for _ in range(WARM_UP):
        await plane.multicrop(request)
    wall, infer = [], []
    for _ in range(n):
        started = time.perf_counter()
        (result,) = await plane.multicrop(request)
        wall.append((time.perf_counter() - started) * 1000.0)
        infer.append(result.timing_ms["infer"])
    return {"median_ms": statistics.median(wall), "median_infer_ms": statistics.median(infer),
            "batch_size": result.timing_ms["batch_size"]}


async def bench(model: str, schemes: list[int], n: int) -> dict[int, dict[str, float]]:
    from service.core.config import load_config
    from service.core.dataplane import DataPlane

    plane = DataPlane(load_config(startup_models=(model,), default_model=model))
    await plane.start()
    try:
        image = chelsea_jpeg()
        return {crops: await measure(plane, model, image, crops, n) for crops in schemes}
    finally:
        await plane.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_multicrop",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--n", type=int, default=20, help="timed requests per scheme")
    parser.add_argument("--schemes", default="1,10", help="comma-separated crop counts")
    args = parser.parse_args(argv)
    schemes = [int(s) for s in args.schemes.split(",")]
    results = asyncio.run(bench(args.model, schemes, args.n))
    base = results[schemes[0]]["median_ms"]
    print(f"{args.model}, chelsea 451x300 JPEG, {args.n} sequential requests per scheme "
          f"after {WARM_UP} warm-up")
    for crops, figures in results.items():
        print(f"  {crops:>3}-crop: median {figures['median_ms']:8.1f} ms "
              f"(inference {figures['median_infer_ms']:8.1f} ms, batch of "
              f"{figures['batch_size']}), x{figures['median_ms'] / base:.2f} of "
              f"{schemes[0]}-crop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
