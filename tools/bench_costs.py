"""CPU costs behind issue 13's choices, measured in this process (docs/benchmarks.md):

- `--decode`: decoding and preprocessing one 12 MP camera JPEG (`tools.photos.camera_jpeg`)
  for a model, at each `dct_scale_margin`, as the service does it (`probe_image(...).decode`,
  then the model's `preprocess`); CPU milliseconds per photo, medians of `--repeats`.
- `--batches`: the model's stored ONNX graph on the instance layout given (`--instances`
  single-thread ONNX Runtime sessions side by side, as `batching.instances: auto` times them
  at start-up), images per second at each power of two up to `--max-batch`, through the same
  measurement `preferred_batch_size: auto` uses (`service.core.layout`).
- `--decoders`: the JPEG decoder, Pillow's (`Image.draft`, what the service runs) against
  simplejpeg's (libjpeg-turbo's TurboJPEG API, the maintained binding the issue names) on
  the bench's small, 3 MP and 12 MP photos, each decoded at the scale the service chooses
  for the model (simplejpeg held to the same power-of-two scale): CPU ms (the header read
  for admission included in both) and whether the pixels are identical.
- `--starts`: the service started as `make bench` starts it (the model alone, the shipped
  batching; `--shipped`: the shipped configuration whole), once a round: the layout and
  batch size its start-up measurement chose for the model, with the speeds behind them, and
  the seconds until it was ready. How often the choice changes from one start to the next is
  how much the machine's drift decides it. `--server-root PATH` starts another checkout.

    python -m tools.bench_costs --decode --batches --decoders --starts [--shipped]
        [--model efficientnet_lite0] [--rounds 2] [--server-root PATH]
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import time
from pathlib import Path

import numpy as np

from model_store import registry
from service.core.layout import candidate_batch_sizes, median_speeds
from tools.launch import ROOT

MARGINS = (1, 2)


def decode_costs(model: str, repeats: int) -> dict[int, dict]:
    from model_store.transforms import preprocess
    from service.core.config import load_config
    from service.core.decoding import DecodeLimits, probe_image
    from tools.photos import camera_jpeg

    spec = registry.get(model).input
    config = load_config()
    limits = DecodeLimits(config.max_image_pixels, config.max_aspect_ratio)
    data = camera_jpeg("chelsea", 12.0)

    def cpu_ms(work) -> float:
        return round(_cpu_ms(work, repeats), 1)

    def decoded(margin: int):
        return probe_image(data, limits, "image").decode(spec.resize, margin)

    costs = {}
    for margin in MARGINS:
        image = probe_image(data, limits, "image").decode(spec.resize, margin)
        decode = cpu_ms(functools.partial(decoded, margin))
        prep = cpu_ms(functools.partial(preprocess, image, spec))
        costs[margin] = {"decoded": image.size, "decode_ms": decode, "preprocess_ms": prep,
                         "total_ms": round(decode + prep, 1)}
    return costs


def _cpu_ms(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.process_time()
        work()
        times.append((time.process_time() - started) * 1000)
    return round(statistics.median(times), 2)


def decoder_costs(model: str, repeats: int) -> dict[str, dict]:
    import simplejpeg
    from PIL import Image

    from service.core.decoding import DEFAULT_DCT_MARGIN, probe_image
    from tools import photos

    spec = registry.get(model).input
    files = {"small": photos.encode(photos.photo("chelsea"), "JPEG", quality=90),
             "3mp": photos.camera_jpeg("chelsea", 3.0),
             "12mp": photos.camera_jpeg("chelsea", 12.0)}

    def with_pillow(data: bytes) -> Image.Image:
        return probe_image(data).decode(spec.resize, DEFAULT_DCT_MARGIN)

    def with_simplejpeg(data: bytes) -> Image.Image:
        probe = probe_image(data)  # the service reads the header to price the decode first
        side = math.ceil(spec.resize * DEFAULT_DCT_MARGIN)
        reduction = min(probe.width // side, probe.height // side)
        factor = next((f for f in (8, 4, 2) if reduction >= f), 1)  # as Pillow's draft
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB",
                                        min_width=-(-probe.width // factor),
                                        min_height=-(-probe.height // factor))
        return Image.fromarray(pixels)

    costs = {}
    for name, data in files.items():
        pillow, simple = with_pillow(data), with_simplejpeg(data)
        costs[name] = {"decoded": pillow.size,
                       "identical": pillow.size == simple.size
                       and np.array_equal(np.asarray(pillow), np.asarray(simple)),
                       "pillow_ms": _cpu_ms(functools.partial(with_pillow, data), repeats),
                       "simplejpeg_ms": _cpu_ms(functools.partial(with_simplejpeg, data),
                                                repeats)}
    return costs


def batch_speeds(model: str, instances: int, max_batch: int) -> dict[int, float]:
    from model_store import repository
    from service.core.backends import OnnxRuntimeBackend

    stored = repository.find(model)
    if stored is None:
        raise SystemExit(f"{model} is not in the store: run `make models`")
    spec = registry.get(model).input
    backend = OnnxRuntimeBackend(stored, device="cpu", threads=1)
    rng = np.random.default_rng(0)
    speeds = median_speeds({size: (backend.run, rng.standard_normal(
        (size, spec.channels, spec.size, spec.size), dtype=np.float32), instances)
        for size in candidate_batch_sizes(max_batch)})
    return {size: round(speed, 1) for size, speed in speeds.items()}


def start_choice(model: str, shipped: bool = False, root: Path = ROOT) -> dict:
    """What one start of the service chose for `model` at warm-up (`GET /models/{name}`'s
    layout), and the seconds from launch to ready: serving `model` alone with the shipped
    batching, or (`shipped`) the shipped configuration whole, all its start-up models, of the
    checkout at `root`."""
    import tempfile

    import yaml

    from tools.launch import shipped_batching, start_server, stop_server

    config = (yaml.safe_load((root / "service" / "config.yaml").read_text()) if shipped
              else {"default_model": model, "startup_models": [model],
                    **shipped_batching(root)})
    with tempfile.TemporaryDirectory(prefix="convzoo-start-") as workdir:
        started = time.perf_counter()
        server = start_server(Path(workdir), config, root=root)
        ready_s = time.perf_counter() - started
        try:
            layout = server.model_status(model)["layout"]
        finally:
            stop_server(server)
    batch = layout["preferred_batch"]
    return {"ready_s": round(ready_s, 1),
            "layout": f"{layout['instances']} x {layout['threads_per_instance']}",
            "layouts_measured": {f"{m['instances']} x {m['threads']}": m["images_per_s"]
                                 for m in layout["measured"]},
            "batch_size": batch["size"],
            "batches_measured": {m["batch_size"]: m["images_per_s"]
                                 for m in batch["measured"]}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_costs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decode", action="store_true")
    parser.add_argument("--batches", action="store_true")
    parser.add_argument("--decoders", action="store_true")
    parser.add_argument("--starts", action="store_true")
    parser.add_argument("--shipped", action="store_true",
                        help="with --starts: start the shipped configuration whole")
    parser.add_argument("--server-root", type=Path, default=ROOT,
                        help="with --starts: the checkout whose service to start")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--repeats", type=int, default=20, help="decodes per margin")
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if not (args.decode or args.batches or args.decoders or args.starts):
        parser.error("choose any of --decode, --batches, --decoders, --starts")
    for round_number in range(1, args.rounds + 1):
        if args.decode:
            for margin, cost in decode_costs(args.model, args.repeats).items():
                print(f"round {round_number} decode margin {margin}: decoded {cost['decoded']}, "
                      f"decode {cost['decode_ms']} + preprocess {cost['preprocess_ms']} = "
                      f"{cost['total_ms']} ms CPU", flush=True)
        if args.decoders:
            for name, cost in decoder_costs(args.model, args.repeats).items():
                print(f"round {round_number} decoders {name}: decoded {cost['decoded']}, "
                      f"Pillow {cost['pillow_ms']} ms, simplejpeg {cost['simplejpeg_ms']} ms "
                      f"CPU, identical pixels: {cost['identical']}", flush=True)
        if args.batches:
            speeds = batch_speeds(args.model, args.instances, args.max_batch)
            print(f"round {round_number} batches ({args.instances} x 1 thread, img/s): "
                  + ", ".join(f"{size}: {speed}" for size, speed in speeds.items()), flush=True)
        if args.starts:
            chose = start_choice(args.model, args.shipped, args.server_root)
            print(f"round {round_number} start: ready in {chose['ready_s']} s; layout "
                  f"{chose['layout']} (img/s: " + ", ".join(
                      f"{name}: {speed}" for name, speed in chose["layouts_measured"].items())
                  + f"); batches of up to {chose['batch_size']} (img/s: " + ", ".join(
                      f"{size}: {speed}" for size, speed in chose["batches_measured"].items())
                  + ")", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
