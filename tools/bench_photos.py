"""`make bench`, the photos users send: served speed by photo size, and a flood of camera
photos with a thumbnail sent alongside.

Photos (tools.photos, all of scikit-image's chelsea): `small`, the photo itself (451 x 300
JPEG); `1mp` and `12mp`, camera-sized JPEGs (quality 90, with sensor-like grain so they are
as large as real ones); `png`, a 6 MP PNG (a large screenshot-like file, decoded in full).

For each photo:
- decode: milliseconds to decode it in this process, in full and as the service now does
  (at the scale the model needs), medians of repeated runs;
- single request: median latency of sequential REST requests on a kept-alive connection;
- served: images/s under `--concurrency` clients over REST (`POST /classify`, the raw file
  as the body) and over gRPC (OIP ModelInfer, a raw BYTES input), rounds alternating the
  photos (this VM's speed drifts by up to a third), medians; the server's CPU time per
  image; and each photo's rate as a ratio of the small photo's, from the same rounds.

Flood: `--flood-clients` clients post 12 MP photos over REST without pause while one client
sends the small photo, one request at a time; reported: the small requests' p50/p99 and
errors, the large photos' rate and refusals (503), and the peak memory (RSS) of the whole
server process tree, sampled every 100 ms.

`--server-root PATH` runs the service of another checkout (an older commit's git worktree)
with this one's environment and store: the "before" figures of docs/benchmarks.md. The
server gets only `default_model`, `startup_models` and its checkout's shipped batching
(service/config.yaml), so each runs its own defaults. The report names the layout the
server chose at its start (`instances: auto` times the candidates then): the small photo is
mostly inference, so the layout moves its rate, and the ratios, from one start to the next.
`--instances N` holds the layout fixed to compare them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import threading
import time
from pathlib import Path

from tools.bench import BENCH_HOME, ROOT, _CpuMeter, _KeptAliveClient, grpc_round, rest_round
from tools.launch import LiveServer

MODEL = "efficientnet_lite0"


def photo_files() -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, content type)."""
    from tools import photos

    chelsea = photos.photo("chelsea")
    return {
        "small": (photos.encode(chelsea, "JPEG", quality=90), "image/jpeg"),
        "1mp": (photos.camera_jpeg("chelsea", 1.0), "image/jpeg"),
        "12mp": (photos.camera_jpeg("chelsea", 12.0), "image/jpeg"),
        "png": (photos.encode(photos.at_megapixels(chelsea, 6.0), "PNG"), "image/png"),
    }


def decode_ms(data: bytes, min_side: int | None, margin: float | None = None,
              repeats: int = 7) -> float:
    from service.core.decoding import DEFAULT_DCT_MARGIN, decode_image

    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        decode_image(data, min_side=min_side, dct_margin=margin or DEFAULT_DCT_MARGIN)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def single_request_ms(url: str, body: bytes, content_type: str, count: int) -> float:
    client = _KeptAliveClient(url)
    times = []
    for index in range(count + 2):
        started = time.perf_counter()
        client.post(body, content_type)
        if index >= 2:  # the first two warm the connection and the caches
            times.append((time.perf_counter() - started) * 1000)
    client.connection.close()
    return round(statistics.median(times), 2)


class MemoryPeak:
    """Peak RSS of a process tree, sampled on a thread."""

    def __init__(self, pid: int, every_s: float = 0.1):
        self.pid, self.every_s = pid, every_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def rss(self) -> int:
        import psutil

        root = psutil.Process(self.pid)
        total = 0
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.peak_bytes = max(self.peak_bytes, self.rss())
            self._stop.wait(self.every_s)

    def __enter__(self) -> MemoryPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


async def _flood(url: str, large: bytes, small: bytes, clients: int, seconds: float) -> dict:
    import aiohttp

    deadline = time.perf_counter() + seconds
    large_ok = large_refused = large_failed = 0
    small_ms: list[float] = []
    small_failed = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients + 1),
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def flooder() -> None:
            nonlocal large_ok, large_refused, large_failed
            while time.perf_counter() < deadline:
                async with session.post(url, data=large,
                                        headers={"content-type": "image/jpeg"}) as response:
                    await response.read()
                    if response.status == 200:
                        large_ok += 1
                    elif response.status == 503:
                        large_refused += 1
                        await asyncio.sleep(float(response.headers.get("retry-after", 1)))
                    else:
                        large_failed += 1

        async def thumbnail() -> None:
            nonlocal small_failed
            await asyncio.sleep(1.0)  # let the flood build up first
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.post(url, data=small,
                                        headers={"content-type": "image/jpeg"}) as response:
                    await response.read()
                    if response.status == 200:
                        small_ms.append((time.perf_counter() - started) * 1000)
                    else:
                        small_failed += 1
                await asyncio.sleep(0.05)

        await asyncio.gather(thumbnail(), *(flooder() for _ in range(clients)))
    ordered = sorted(small_ms)

    def percentile(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else 0

    return {"small_requests": len(small_ms), "small_failed": small_failed,
            "small_p50_ms": percentile(0.5), "small_p99_ms": percentile(0.99),
            "small_max_ms": round(ordered[-1], 1) if ordered else 0,
            "large_images_per_s": round(large_ok / seconds, 2),
            "large_refused_503": large_refused, "large_failed_other": large_failed}


def run(args: argparse.Namespace) -> dict:
    import os

    from model_store import registry
    from tools.bench import ensure_models
    from tools.launch import shipped_batching, start_server, stop_server

    ensure_models([MODEL], args.home)
    os.environ["BENTOML_HOME"] = str(args.home)
    files = {name: files for name, files in photo_files().items() if name in args.photos}
    resize = registry.get(MODEL).input.resize
    report: dict = {
        "machine": f"{platform.processor() or platform.machine()}, "
                   f"{os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
        "server_root": str(args.server_root), "model": MODEL,
        "concurrency": args.concurrency, "seconds_each": args.seconds, "rounds": args.rounds,
        "dct_scale_margin": args.dct_scale_margin or "the checkout's default",
        "instances": args.instances or "the checkout's default",
        "photos": {name: {"bytes": len(data), "content_type": kind}
                   for name, (data, kind) in files.items()}}
    for name, (data, _) in files.items():
        report["photos"][name]["decode_full_ms"] = decode_ms(data, None)
        report["photos"][name]["decode_scaled_ms"] = decode_ms(data, resize,
                                                               args.dct_scale_margin)
    workdir = args.home / "server-photos"
    workdir.mkdir(parents=True, exist_ok=True)
    margin = {"dct_scale_margin": args.dct_scale_margin} if args.dct_scale_margin else {}
    batching = shipped_batching(args.server_root)
    if args.instances:  # a layout held fixed, to compare ratios between layouts
        batching["batching"] = {**batching.get("batching", {}), "instances": args.instances}
    server = start_server(workdir, {"default_model": MODEL, "startup_models": [MODEL],
                                    **batching, **margin},
                          root=args.server_root)
    try:
        report["server_layout"] = served_layout(server)
        url = server.http_url + "/classify"
        for name, (data, kind) in files.items():
            report["photos"][name]["single_request_ms"] = single_request_ms(url, data, kind,
                                                                            args.single)
        rates: dict[str, dict[str, list[float]]] = {n: {"rest": [], "grpc": []} for n in files}
        cpu = {name: _CpuMeter(server.process.pid) for name in files}
        for _ in range(args.rounds):
            for name, (data, kind) in files.items():
                for protocol in ("rest", "grpc"):
                    with cpu[name].measuring() as meter:
                        rate, failed = (
                            rest_round(url, data, args.concurrency, args.seconds, kind)
                            if protocol == "rest" else
                            grpc_round(server.grpc_target, MODEL, data, args.concurrency,
                                       args.seconds))
                        meter.images = rate * args.seconds
                    rates[name][protocol].append(rate)
                    report["photos"][name].setdefault("failed", 0)
                    report["photos"][name]["failed"] += failed
        small = {p: statistics.median(rates["small"][p]) for p in ("rest", "grpc")} \
            if "small" in files else None
        for name in files:
            row = report["photos"][name]
            for protocol in ("rest", "grpc"):
                median = statistics.median(rates[name][protocol])
                row[f"{protocol}_images_per_s"] = round(median, 1)
                row[f"{protocol}_rounds"] = [round(r, 1) for r in rates[name][protocol]]
                if small:
                    row[f"{protocol}_ratio_to_small"] = round(median / small[protocol], 3)
            row["server_cpu_ms_per_image"] = cpu[name].served_ms_per_image()[
                "server_cpu_ms_per_image"]
        if args.flood_seconds > 0:
            with MemoryPeak(server.process.pid) as memory:
                idle = memory.rss()
                flood = asyncio.run(_flood(url, photo_files()["12mp"][0],
                                           photo_files()["small"][0], args.flood_clients,
                                           args.flood_seconds))
            report["flood"] = {**flood, "clients": args.flood_clients,
                               "seconds": args.flood_seconds,
                               "server_rss_before_mb": round(idle / 2**20),
                               "server_rss_peak_mb": round(memory.peak_bytes / 2**20)}
    finally:
        stop_server(server)
    return report


def served_layout(server: LiveServer) -> dict | None:
    """The instances, threads and batch size the server chose for MODEL at its start
    (`GET /models/{name}`): small photos are mostly inference, so these move their rate, and
    the ratios, from one start to the next. None for a server that does not report them."""
    layout = server.model_status(MODEL).get("layout")
    if not layout:
        return None
    return {"instances": layout["instances"], "threads": layout["threads_per_instance"],
            "batch_size": layout["preferred_batch"]["size"],
            "chosen_by": layout["chosen_by"]}


def markdown(report: dict) -> str:
    lines = ["| photo | bytes | decode full / scaled (ms) | single request (ms) | REST img/s "
             "(ratio to small) | gRPC img/s (ratio) | server CPU ms/image |",
             "|---|---|---|---|---|---|---|"]
    for name, row in report["photos"].items():
        lines.append(
            f"| {name} | {row['bytes']:,} | {row['decode_full_ms']} / {row['decode_scaled_ms']}"
            f" | {row.get('single_request_ms')} | {row.get('rest_images_per_s')} "
            f"({row.get('rest_ratio_to_small')}) | {row.get('grpc_images_per_s')} "
            f"({row.get('grpc_ratio_to_small')}) | {row.get('server_cpu_ms_per_image')} |")
    layout = report.get("server_layout")
    if layout:
        lines += ["", f"Server layout ({layout['chosen_by']}): {layout['instances']} "
                      f"instance(s) x {layout['threads']} thread(s), batches of up to "
                      f"{layout['batch_size']}"]
    flood = report.get("flood")
    if flood:
        lines += ["", f"Flood ({flood['clients']} clients posting 12 MP for "
                      f"{flood['seconds']} s): small photo p50 {flood['small_p50_ms']} ms, "
                      f"p99 {flood['small_p99_ms']} ms (max {flood['small_max_ms']}, "
                      f"{flood['small_requests']} requests, {flood['small_failed']} failed); "
                      f"12 MP {flood['large_images_per_s']} img/s, "
                      f"{flood['large_refused_503']} refused (503), "
                      f"{flood['large_failed_other']} other errors; server RSS "
                      f"{flood['server_rss_before_mb']} MB before, peak "
                      f"{flood['server_rss_peak_mb']} MB"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default="small,1mp,12mp,png")
    parser.add_argument("--seconds", type=float, default=6.0, help="per load measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--single", type=int, default=20, help="sequential requests per photo")
    parser.add_argument("--flood-clients", type=int, default=24)
    parser.add_argument("--flood-seconds", type=float, default=30.0, help="0: no flood")
    parser.add_argument("--server-root", type=Path, default=ROOT,
                        help="the checkout whose service to run (default: this one)")
    parser.add_argument("--home", type=Path, default=BENCH_HOME)
    parser.add_argument("--dct-scale-margin", type=float,
                        help="serve with this dct_scale_margin (default: the checkout's)")
    parser.add_argument("--instances", type=int,
                        help="serve with this many model instances, the cores divided among "
                             "them (default: the checkout's, `auto` as shipped)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    args.photos = args.photos.split(",")
    report = run(args)
    print(markdown(report), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
