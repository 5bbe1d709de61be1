"""`make bench`: raw backend throughput against served throughput, in one run.

For each model, on this machine:
- raw: the backend the server would build (same ONNX Runtime settings) on preprocessed
  batches, no HTTP and no decoding: images/s at each batch size, with one model instance on
  all cores and with one instance per core (batches side by side), and the best of them;
- served: a real server process (`bentoml serve`, the model's batcher at that best batch
  size and instance count, no added delay) under concurrent load of a real JPEG photo
  (decoding, preprocessing, HTTP included) over REST and over gRPC (OIP ModelInfer, the
  JPEG as a raw BYTES input);
- single-request latency: one REST request at a time over a kept-alive connection, against
  one raw batch-1 run of the same photo, preprocessed.

This machine's speed drifts by tens of percent from minute to minute (a shared virtual
machine), so raw and served runs alternate: `--rounds` rounds of raw, REST and gRPC, and the
ratios are of the medians; latency pairs alternate raw and served one by one. The load
generator (aiohttp, about 0.5 ms of CPU a request) runs on the same cores as the server.
Random weights are fine for speed (resnet50 is imported random-init into a store of the
benchmark's own, `.bentoml-bench`).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from tools import photos
from tools.load import PreparedRequest, image_infer_request, run_grpc_round, run_round

ROOT = Path(__file__).resolve().parent.parent
BENCH_HOME = ROOT / ".bentoml-bench"


def ensure_models(models: list[str], home: Path) -> None:
    """Import the benchmark's models into its store: real weights where offline, else
    random-init (marked so)."""
    os.environ["BENTOML_HOME"] = str(home)
    from model_store import registry, repository

    present = repository.stored_status()
    for name in models:
        if name in present:
            continue
        spec = registry.get(name)
        args = ["pull", name] + ([] if spec.offline_source else ["--random-init"])
        subprocess.run([sys.executable, "-m", "model_store", *args], cwd=ROOT, check=True,
                       env={**os.environ, "BENTOML_HOME": str(home)})


def photo_jpeg(size: int) -> bytes:
    """scikit-image's chelsea resized so its shorter side is `size`, as JPEG."""
    return photos.jpeg("chelsea", quality=90, shorter_side=size)


class RawModel:
    """The model as the server runs it, minus everything around it: `instances` batches at a
    time on one session, each with the intra-op threads the server would give it."""

    def __init__(self, name: str, instances: int = 1):
        from model_store import registry, repository
        from service.core.backends import create_backend
        from service.core.config import BatchingConfig, ServingConfig

        # the bench's servers run on these defaults too, with this many instances
        config = ServingConfig(batching=BatchingConfig(instances=instances))
        self.spec = registry.get(name)
        self.instances = instances
        self.threads = config.threads_for(name)
        self.backend = create_backend(config.backend, repository.find(name), config.device,
                                      self.threads, config.intra_op_spinning)
        self.shape = (self.spec.input.channels, self.spec.input.size, self.spec.input.size)

    def throughput(self, batch_size: int, seconds: float) -> float:
        batch = np.random.default_rng(0).standard_normal(
            (batch_size, *self.shape)).astype(np.float32)
        self.backend.run(batch)
        counts = [0] * self.instances
        started = time.perf_counter()

        def instance(index: int) -> None:  # ONNX Runtime releases the GIL while it runs
            while time.perf_counter() - started < seconds:
                self.backend.run(batch)
                counts[index] += batch_size

        threads = [threading.Thread(target=instance, args=(i,)) for i in range(self.instances)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(counts) / (time.perf_counter() - started)

    def photo_tensor(self, jpeg: bytes) -> np.ndarray:
        from model_store.transforms import preprocess
        from service.core.decoding import decode_image

        return preprocess(decode_image(jpeg), self.spec.input)[None]


def rest_round(url: str, body: bytes, concurrency: int, seconds: float,
               content_type: str = "image/jpeg") -> tuple[float, int]:
    """One round of `tools.load` on a REST route: (images/s, failed requests)."""
    result = run_round(PreparedRequest(url, body, {"content-type": content_type}),
                       concurrency, seconds)
    return result.images_per_s, result.errors


def grpc_round(target: str, model: str, body: bytes, concurrency: int, seconds: float
               ) -> tuple[float, int]:
    """One round of `tools.load` on OIP ModelInfer: (images/s, failed requests)."""
    result = run_grpc_round(target, image_infer_request(model, body), concurrency, seconds)
    return result.images_per_s, result.errors


class _KeptAliveClient:
    """One HTTP/1.1 connection, reused: what a latency-minded client does."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.path = parts.path
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

    def post(self, body: bytes, content_type: str = "image/jpeg") -> dict:
        self.connection.request("POST", self.path, body=body,
                                headers={"content-type": content_type})
        response = self.connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:300]!r}")
        return json.loads(payload)


def single_latency(raw: RawModel, url: str, body: bytes, pairs: int) -> dict:
    """Medians of raw batch-1 runs and sequential REST requests, taken alternately."""
    client = _KeptAliveClient(url)
    tensor = raw.photo_tensor(body)
    for _ in range(5):
        raw.backend.run(tensor)
        client.post(body)
    raw_ms, served_ms, in_server_ms = [], [], []
    for _ in range(pairs):
        t0 = time.perf_counter()
        raw.backend.run(tensor)
        t1 = time.perf_counter()
        result = client.post(body)
        t2 = time.perf_counter()
        raw_ms.append((t1 - t0) * 1000)
        served_ms.append((t2 - t1) * 1000)
        in_server_ms.append(result["timing_ms"]["total"])
    client.connection.close()
    raw_median, served_median = statistics.median(raw_ms), statistics.median(served_ms)
    return {"raw_ms": round(raw_median, 2), "served_ms": round(served_median, 2),
            "overhead_ms": round(served_median - raw_median, 2),
            "in_server_total_ms": round(statistics.median(in_server_ms), 2), "pairs": pairs}


def bench_model(name: str, batch_sizes: list[int], instance_counts: list[int],
                seconds: float, rounds: int, concurrency: int, workdir: Path) -> dict:
    from tools.launch import start_server, stop_server

    # The limit on this machine: the best batch size under each instance layout (one
    # instance on all cores, or several splitting them), and the best of those.
    layouts = {count: RawModel(name, count) for count in instance_counts}
    sweep = {count: {size: raw.throughput(size, seconds) for size in batch_sizes}
             for count, raw in layouts.items()}
    instances, best = max(((count, size) for count in sweep for size in sweep[count]),
                          key=lambda key: sweep[key[0]][key[1]])
    raw = layouts[instances]
    server = start_server(workdir, {
        "default_model": name, "startup_models": [name],
        "batching": {"max_batch_size": best, "max_delay_ms": 0, "max_queue": 4096,
                     "instances": instances}})
    try:
        body = photo_jpeg(raw.spec.input.resize)
        url = server.http_url + "/classify"
        latency = single_latency(raw, url, body, pairs=40)
        raw_rounds, rest_rounds, grpc_rounds, failed = [], [], [], 0
        cpu = {"raw": _CpuMeter(), "rest": _CpuMeter(server.process.pid),
               "grpc": _CpuMeter(server.process.pid)}
        batches = [_batch_totals(server.http_url)]
        for _ in range(rounds):
            with cpu["raw"].measuring() as meter:
                raw_rounds.append(raw.throughput(best, seconds))
                meter.images = raw_rounds[-1] * seconds
            with cpu["rest"].measuring() as meter:
                rate, failures = rest_round(url, body, concurrency, seconds)
                meter.images = rate * seconds
            rest_rounds.append(rate)
            failed += failures
            batches.append(_batch_totals(server.http_url))
            with cpu["grpc"].measuring() as meter:
                rate, failures = grpc_round(server.grpc_target, name, body, concurrency,
                                            seconds)
                meter.images = rate * seconds
            grpc_rounds.append(rate)
            failed += failures
            batches.append(_batch_totals(server.http_url))
    finally:
        stop_server(server)
    raw_median = statistics.median(raw_rounds)
    return {
        "raw": {"images_per_s_by_instances_and_batch": {
                    str(count): {str(k): round(v, 1) for k, v in rates.items()}
                    for count, rates in sweep.items()},
                "best_batch": best, "instances": instances,
                "threads_per_instance": raw.threads, "providers": raw.backend.providers,
                "rounds_images_per_s": [round(v, 1) for v in raw_rounds],
                "images_per_s": round(raw_median, 1),
                "cpu_ms_per_image": cpu["raw"].own_ms_per_image()},
        "rest": {"rounds_images_per_s": [round(v, 1) for v in rest_rounds],
                 "images_per_s": round(statistics.median(rest_rounds), 1),
                 "ratio": round(statistics.median(rest_rounds) / raw_median, 3),
                 "mean_batch_size": _mean_batch(batches[0::2], batches[1::2]),
                 **cpu["rest"].served_ms_per_image()},
        "grpc": {"rounds_images_per_s": [round(v, 1) for v in grpc_rounds],
                 "images_per_s": round(statistics.median(grpc_rounds), 1),
                 "ratio": round(statistics.median(grpc_rounds) / raw_median, 3),
                 "mean_batch_size": _mean_batch(batches[1::2], batches[2::2]),
                 **cpu["grpc"].served_ms_per_image()},
        "failed_requests": failed, "concurrency": concurrency, "seconds_each": seconds,
        "single_latency": latency}


class _CpuMeter:
    """CPU time per image, of this process (the load generator, or raw inference) and of the
    server's process tree: where the cores went, which throughput alone does not say."""

    def __init__(self, server_pid: int | None = None):
        self.server_pid = server_pid
        self.own_s = self.server_s = self.images = 0.0

    def _server_cpu_s(self) -> float:
        import psutil

        if self.server_pid is None:
            return 0.0
        root = psutil.Process(self.server_pid)
        total = 0.0
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    @contextlib.contextmanager
    def measuring(self):
        round_meter = _CpuMeter(self.server_pid)
        own, server = time.process_time(), self._server_cpu_s()
        yield round_meter
        self.own_s += time.process_time() - own
        self.server_s += self._server_cpu_s() - server
        self.images += round_meter.images

    def own_ms_per_image(self) -> float:
        return round(self.own_s * 1000 / max(self.images, 1), 2)

    def served_ms_per_image(self) -> dict:
        return {"server_cpu_ms_per_image": round(self.server_s * 1000 / max(self.images, 1), 2),
                "client_cpu_ms_per_image": self.own_ms_per_image()}


def _batch_totals(http_url: str) -> tuple[float, float]:
    """(images, batches) counted by the batch-size histogram so far."""
    import httpx

    lines = httpx.get(http_url + "/metrics").text.splitlines()

    def total(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))

    return total("convzoo_batch_size_sum"), total("convzoo_batch_size_count")


def _mean_batch(befores: list[tuple[float, float]], afters: list[tuple[float, float]]
                ) -> float:
    images = sum(a[0] - b[0] for b, a in zip(befores, afters, strict=False))
    batches = sum(a[1] - b[1] for b, a in zip(befores, afters, strict=False))
    return round(images / max(batches, 1), 2)


def summary_line(name: str, row: dict) -> str:
    raw, rest, grpc, single = row["raw"], row["rest"], row["grpc"], row["single_latency"]
    return (f"{name}: raw {raw['images_per_s']} img/s (batch {raw['best_batch']}, "
            f"{raw['instances']} instance(s) x {raw['threads_per_instance']} thread(s)); REST "
            f"{rest['images_per_s']} img/s (mean batch {rest['mean_batch_size']}) -> ratio "
            f"{rest['ratio']}; gRPC {grpc['images_per_s']} img/s -> ratio {grpc['ratio']}; "
            f"{row['failed_requests']} failed; single request raw {single['raw_ms']} ms, "
            f"REST {single['served_ms']} ms (+{single['overhead_ms']} ms); CPU ms per image: "
            f"raw {raw['cpu_ms_per_image']}, REST server {rest['server_cpu_ms_per_image']} + "
            f"load generator {rest['client_cpu_ms_per_image']}, gRPC server "
            f"{grpc['server_cpu_ms_per_image']} + {grpc['client_cpu_ms_per_image']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="efficientnet_lite0,resnet50")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    parser.add_argument("--instances", default=None,
                        help="instance counts to try, e.g. 1,2 (default: 1 and the cores)")
    parser.add_argument("--seconds", type=float, default=6.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating raw/REST/gRPC rounds; ratios are of the medians")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--home", type=Path, default=BENCH_HOME,
                        help="BentoML home holding the model store (models are imported "
                             "into it when missing)")
    parser.add_argument("--workdir", type=Path,
                        help="for the server's configuration and log (default: HOME/server)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    from service.core.config import usable_cores

    models = args.models.split(",")
    ensure_models(models, args.home)
    report = {"machine": f"{platform.node()} {platform.machine()} {usable_cores()} cores",
              "date": time.strftime("%Y-%m-%d"), "models": {}}
    workdir = args.workdir or args.home / "server"
    workdir.mkdir(parents=True, exist_ok=True)
    instance_counts = ([int(c) for c in args.instances.split(",")] if args.instances
                       else sorted({1, usable_cores()}))
    for name in models:
        row = bench_model(name, [int(b) for b in args.batch_sizes.split(",")],
                          instance_counts, args.seconds, args.rounds, args.concurrency,
                          workdir)
        report["models"][name] = row
        print(summary_line(name, row), flush=True)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
