"""A bounded soak: `python -m tools.soak --minutes N` (the test suite runs a short one).

It starts a real server (`bentoml serve`, as the integration tests start one: free loopback
ports, a BentoML home of its own sharing the model store), then for N minutes keeps a few
concurrent clients busy with a mix of REST and gRPC requests on real images (a JPEG photo for
EfficientNet-Lite0, single and batched; scikit-learn digits for LeNet-5), checks every answer,
and samples the worker process's resident memory every few seconds. It prints requests,
failures (anything but a correct answer; there should be none), the RSS at start, end and
maximum, the slope of a least-squares line through the samples, and whether memory stayed
flat: the median of the last third of the samples within `--rss-tolerance` of the middle
third's (the first third is warm-up: allocator pools, ONNX Runtime arenas). Exit status 1 when
a request failed or memory was not flat.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("rest_classify", "grpc_infer", "rest_batch", "grpc_batch")
WORKER_MODULE = "_bentoml_impl.worker.service"
SOAK_CONFIG = {
    "default_model": "efficientnet_lite0",
    "startup_models": ["efficientnet_lite0", "lenet5"],
    "batching": {"max_batch_size": 16, "max_delay_ms": 2, "max_queue": 256, "instances": 1},
}


def worker_process(serve_pid: int) -> psutil.Process | None:
    """The BentoML worker that runs the service (and the gRPC server): a child of the
    `bentoml serve` supervisor whose command line runs the service module."""
    try:
        children = psutil.Process(serve_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            if WORKER_MODULE in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


@dataclass
class SoakResult:
    seconds: float
    requests: int = 0
    failures: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    failure_samples: list[str] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)  # one sample every `sample_s`
    worker_restarts: int = 0

    @property
    def thirds(self) -> tuple[float, float]:
        """Medians of the middle and last thirds of the RSS samples."""
        n = len(self.rss_mb)
        return (statistics.median(self.rss_mb[n // 3:2 * n // 3]),
                statistics.median(self.rss_mb[2 * n // 3:]))

    @property
    def slope_mb_per_min(self) -> float:
        n = len(self.rss_mb)
        if n < 2:
            return 0.0
        times = [i * self.seconds / (n - 1) / 60 for i in range(n)]
        return statistics.linear_regression(times, self.rss_mb).slope

    def flat(self, tolerance: float) -> bool:
        middle, last = self.thirds
        return abs(last - middle) <= tolerance * middle

    def summary(self, tolerance: float) -> dict:
        middle, last = self.thirds
        return {"seconds": round(self.seconds, 1), "requests": self.requests,
                "requests_per_s": round(self.requests / self.seconds, 1),
                "failures": self.failures, "by_kind": self.by_kind,
                "failure_samples": self.failure_samples,
                "worker_restarts": self.worker_restarts,
                "rss_mb": {"start": self.rss_mb[0], "end": self.rss_mb[-1],
                           "max": max(self.rss_mb), "middle_third_median": round(middle, 1),
                           "last_third_median": round(last, 1),
                           "slope_mb_per_min": round(self.slope_mb_per_min, 2),
                           "samples": len(self.rss_mb)},
                "memory_flat": self.flat(tolerance)}


def _images() -> tuple[bytes, list[bytes]]:
    """A JPEG photo (scikit-image's chelsea) and a few digit PNGs (scikit-learn's digits)."""
    from model_store.training.lenet5 import digits_as_images
    from tools import photos

    digits, _ = digits_as_images()
    return (photos.jpeg("chelsea", quality=75),  # PIL's default quality
            [photos.encode(digits[i], "PNG") for i in range(4)])


async def _load(http_url: str, grpc_target: str, seconds: float, concurrency: int,
                result: SoakResult, only: tuple[str, ...] = ()) -> None:
    import grpc
    import httpx

    from contract._proto import grpc_predict_v2_pb2 as pb
    from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc

    photo, digits = _images()

    def infer_request(model: str, images: list[bytes]) -> pb.ModelInferRequest:
        request = pb.ModelInferRequest(model_name=model)
        tensor = request.inputs.add(name="IMAGE", datatype="BYTES", shape=[len(images)])
        tensor.contents.bytes_contents.extend(images)
        return request

    async def rest_one(client: httpx.AsyncClient) -> None:
        response = await client.post("/classify", content=photo,
                                     headers={"content-type": "image/jpeg"})
        response.raise_for_status()
        assert response.json()["predictions"], response.text

    async def rest_batch(client: httpx.AsyncClient) -> None:
        response = await client.post("/classify_batch", json={
            "model": "lenet5", "top_k": 3,
            "images": [base64.b64encode(d).decode() for d in digits]})
        response.raise_for_status()
        assert len(response.json()["results"]) == len(digits), response.text

    async def grpc_one(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
        response = await stub.ModelInfer(infer_request("efficientnet_lite0", [photo]),
                                         timeout=60)
        assert response.outputs, response

    async def grpc_batch(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
        response = await stub.ModelInfer(infer_request("lenet5", digits), timeout=60)
        assert list(response.outputs[0].shape)[0] == len(digits), response

    kinds = [("rest_classify", rest_one, "rest"), ("grpc_infer", grpc_one, "grpc"),
             ("rest_batch", rest_batch, "rest"), ("grpc_batch", grpc_batch, "grpc")]
    kinds = [kind for kind in kinds if not only or kind[0] in only]
    if not kinds:
        raise ValueError(f"no request kind among {only}; kinds: {', '.join(KINDS)}")
    counts: Counter[str] = Counter()
    deadline = time.monotonic() + seconds

    async with (httpx.AsyncClient(base_url=http_url, timeout=60) as client,
                grpc.aio.insecure_channel(grpc_target) as channel):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        async def worker(index: int) -> None:
            turn = index
            while time.monotonic() < deadline:
                name, call, transport = kinds[turn % len(kinds)]
                turn += 1
                try:
                    await call(client if transport == "rest" else stub)
                    counts[name] += 1
                except Exception as exc:  # every failure counts, whatever its kind
                    result.failures += 1
                    if len(result.failure_samples) < 5:
                        result.failure_samples.append(f"{name}: {type(exc).__name__}: "
                                                      f"{str(exc)[:200]}")
                result.requests += 1

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    result.by_kind = dict(counts)


async def _sample_rss(serve_pid: int, result: SoakResult, sample_s: float,
                      stop: asyncio.Event) -> None:
    pid = None
    while True:
        worker = worker_process(serve_pid)
        try:
            if worker is not None:
                result.rss_mb.append(round(worker.memory_info().rss / 2**20, 1))
                if pid is not None and worker.pid != pid:
                    result.worker_restarts += 1
                pid = worker.pid
        except psutil.NoSuchProcess:
            pass  # it died between the look-up and the read; the next sample sees it
        try:
            await asyncio.wait_for(stop.wait(), sample_s)
            return
        except TimeoutError:
            continue


async def soak_server(http_url: str, grpc_target: str, serve_pid: int, seconds: float,
                      concurrency: int = 4, sample_s: float = 3.0,
                      only: tuple[str, ...] = ()) -> SoakResult:
    """Soak an already running server; RSS comes from `serve_pid`'s worker process."""
    result = SoakResult(seconds=seconds)
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(serve_pid, result, sample_s, stop))
    started = time.monotonic()
    try:
        await _load(http_url, grpc_target, seconds, concurrency, result, only)
    finally:
        stop.set()
        await sampler
    result.seconds = time.monotonic() - started
    return result


def run_soak(minutes: float, concurrency: int = 4, sample_s: float = 3.0,
             workdir: Path | None = None, only: tuple[str, ...] = ()) -> SoakResult:
    """Start a server of the soak's own, soak it, stop it."""
    from tools.launch import start_server, stop_server

    with tempfile.TemporaryDirectory(prefix="convzoo-soak-") as scratch:
        server = start_server(workdir or Path(scratch), SOAK_CONFIG)
        try:
            return asyncio.run(soak_server(server.http_url, server.grpc_target,
                                           server.process.pid, minutes * 60, concurrency,
                                           sample_s, only))
        finally:
            stop_server(server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--only", default="",
                        help=f"comma-separated request kinds to send ({', '.join(KINDS)}); "
                             "default: all, in turn")
    parser.add_argument("--sample-seconds", type=float, default=3.0)
    parser.add_argument("--rss-tolerance", type=float, default=0.10,
                        help="allowed last-third vs middle-third RSS change (fraction)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    # As `make`: the model store inside the checkout unless one is given.
    os.environ.setdefault("BENTOML_HOME", str(ROOT / ".bentoml"))
    only = tuple(kind.strip() for kind in args.only.split(",") if kind.strip())
    result = run_soak(args.minutes, args.concurrency, args.sample_seconds, only=only)
    summary = {"rss_tolerance": args.rss_tolerance, "concurrency": args.concurrency,
               **result.summary(args.rss_tolerance), "rss_samples_mb": result.rss_mb}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if result.failures == 0 and summary["memory_flat"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
