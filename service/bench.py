"""`make bench`: raw backend throughput against served throughput, in one run.

For each model it measures, on this machine:
- raw: ONNX Runtime on preprocessed batches (no HTTP, no decoding), images/s at each batch
  size, and the best of them; single-image latency (median);
- served: a real server process (`bentoml serve`, the model's batcher at the best batch size)
  under concurrent REST load of real JPEG photos (decoding, preprocessing, HTTP included),
  images/s, and single-request latency (median, sequential requests); then the same load over
  gRPC (OIP ModelInfer with the JPEG as a raw BYTES input);
- and the ratios served/raw. Random weights are fine for speed (resnet50 is imported
  random-init into a store of the benchmark's own, `.bentoml-bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH_HOME = ROOT / ".bentoml-bench"


def ensure_models(models: list[str]) -> None:
    """Import the benchmark's models into its own store: real weights where offline, else
    random-init (marked so)."""
    os.environ["BENTOML_HOME"] = str(BENCH_HOME)
    from model_store import registry, store

    present = store.stored_status()
    for name in models:
        if name in present:
            continue
        spec = registry.get(name)
        args = ["pull", name] + ([] if spec.offline_source else ["--random-init"])
        subprocess.run([sys.executable, "-m", "model_store", *args], cwd=ROOT, check=True,
                       env={**os.environ, "BENTOML_HOME": str(BENCH_HOME)})


def photo_jpeg(size: int) -> bytes:
    """scikit-image's chelsea resized so its shorter side is `size`, as JPEG."""
    from PIL import Image
    from skimage import data

    image = Image.fromarray(data.chelsea())
    scale = size / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def raw_figures(name: str, batch_sizes: list[int], seconds: float) -> dict:
    from model_store import registry, store
    from service.core.backends import OnnxRuntimeBackend

    spec = registry.get(name)
    backend = OnnxRuntimeBackend(store.find(name), device="auto")
    shape = (spec.input.channels, spec.input.size, spec.input.size)
    throughput = {}
    for size in batch_sizes:
        batch = np.random.default_rng(0).standard_normal((size, *shape)).astype(np.float32)
        backend.run(batch)
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            backend.run(batch)
            count += size
        throughput[size] = count / (time.perf_counter() - started)
    one = np.zeros((1, *shape), np.float32)
    latencies = []
    for _ in range(30):
        t0 = time.perf_counter()
        backend.run(one)
        latencies.append((time.perf_counter() - t0) * 1000)
    best = max(throughput, key=throughput.get)
    return {"images_per_s_by_batch": {str(k): round(v, 1) for k, v in throughput.items()},
            "best_batch": best, "best_images_per_s": round(throughput[best], 1),
            "single_latency_ms": round(statistics.median(latencies), 2),
            "providers": backend.providers}


async def _load(url: str, body: bytes, concurrency: int, seconds: float) -> tuple[int, int]:
    import httpx

    ok = failed = 0
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(
            max_connections=concurrency)) as client:
        async def worker() -> None:
            nonlocal ok, failed
            while time.perf_counter() < deadline:
                response = await client.post(url, content=body,
                                             headers={"content-type": "image/jpeg"})
                if response.status_code == 200:
                    ok += 1
                else:
                    failed += 1
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, failed


async def _grpc_load(target: str, model: str, body: bytes, concurrency: int, seconds: float
                     ) -> tuple[int, int]:
    import grpc

    from clients._proto import grpc_predict_v2_pb2 as pb
    from clients._proto import grpc_predict_v2_pb2_grpc as pb_grpc
    from service.oip_codec import encode_bytes_elements

    request = pb.ModelInferRequest(
        model_name=model,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="IMAGE", datatype="BYTES",
                                                      shape=[1])],
        raw_input_contents=[encode_bytes_elements([body])])
    ok = failed = 0
    deadline = time.perf_counter() + seconds
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        async def worker() -> None:
            nonlocal ok, failed
            while time.perf_counter() < deadline:
                try:
                    await stub.ModelInfer(request, timeout=60)
                    ok += 1
                except grpc.aio.AioRpcError:
                    failed += 1
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, failed


def served_figures(name: str, best_batch: int, concurrency: int, seconds: float) -> dict:
    import httpx

    from model_store import registry
    from service.launch import start_server, stop_server

    spec = registry.get(name)
    workdir = BENCH_HOME / "server"
    workdir.mkdir(parents=True, exist_ok=True)
    server = start_server(workdir, {
        "default_model": name, "startup_models": [name],
        "batching": {"max_batch_size": best_batch, "max_delay_ms": 0, "max_queue": 4096}})
    try:
        body = photo_jpeg(spec.input.resize)
        url = server.http_url + "/classify"
        for _ in range(5):
            httpx.post(url, content=body, headers={"content-type": "image/jpeg"}, timeout=60)
        latencies = []
        for _ in range(30):
            t0 = time.perf_counter()
            httpx.post(url, content=body, headers={"content-type": "image/jpeg"}, timeout=60)
            latencies.append((time.perf_counter() - t0) * 1000)
        batches_before = _batch_totals(server.http_url)
        started = time.perf_counter()
        ok, failed = asyncio.run(_load(url, body, concurrency, seconds))
        elapsed = time.perf_counter() - started
        batches_rest = _batch_totals(server.http_url)
        started = time.perf_counter()
        grpc_ok, grpc_failed = asyncio.run(
            _grpc_load(server.grpc_target, name, body, concurrency, seconds))
        grpc_elapsed = time.perf_counter() - started
        batches_grpc = _batch_totals(server.http_url)
        return {"images_per_s": round(ok / elapsed, 1), "failed": failed,
                "concurrency": concurrency,
                "single_latency_ms": round(statistics.median(latencies), 2),
                "mean_batch_size": _mean_batch(batches_before, batches_rest),
                "grpc_images_per_s": round(grpc_ok / grpc_elapsed, 1),
                "grpc_failed": grpc_failed,
                "grpc_mean_batch_size": _mean_batch(batches_rest, batches_grpc)}
    finally:
        stop_server(server)


def _batch_totals(http_url: str) -> tuple[float, float]:
    """(images, batches) counted by the batch-size histogram so far."""
    import httpx

    lines = httpx.get(http_url + "/metrics").text.splitlines()

    def total(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))

    return total("convzoo_batch_size_sum"), total("convzoo_batch_size_count")


def _mean_batch(before: tuple[float, float], after: tuple[float, float]) -> float:
    return round((after[0] - before[0]) / max(after[1] - before[1], 1), 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="efficientnet_lite0,resnet50")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    ensure_models(models)
    report = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
              "date": time.strftime("%Y-%m-%d"), "models": {}}
    for name in models:
        raw = raw_figures(name, [int(b) for b in args.batch_sizes.split(",")], args.seconds)
        served = served_figures(name, raw["best_batch"], args.concurrency, args.seconds * 2)
        report["models"][name] = {
            "raw": raw, "served": served,
            "throughput_ratio": round(served["images_per_s"] / raw["best_images_per_s"], 3),
            "grpc_throughput_ratio": round(
                served["grpc_images_per_s"] / raw["best_images_per_s"], 3),
            "single_latency_overhead_ms": round(
                served["single_latency_ms"] - raw["single_latency_ms"], 2)}
        row = report["models"][name]
        print(f"{name}: raw {raw['best_images_per_s']} img/s (batch {raw['best_batch']}), "
              f"served {served['images_per_s']} img/s (mean batch {served['mean_batch_size']},"
              f" {served['failed']} failed) -> ratio {row['throughput_ratio']}; gRPC "
              f"{served['grpc_images_per_s']} img/s -> ratio {row['grpc_throughput_ratio']}; "
              "single latency"
              f" raw {raw['single_latency_ms']} ms, served {served['single_latency_ms']} ms "
              f"(+{row['single_latency_overhead_ms']} ms)", flush=True)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
