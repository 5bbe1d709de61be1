"""`make bench-gpu`: how fast ConvZoo is on a GPU machine, in one command, within a budget.

It first says what is there (GPUs through NVML, the ONNX Runtime providers offered and the
ones that can actually be created, torchvision's CUDA for nvJPEG), then measures, per model:

- raw: images/s of the backend the server would build (I/O binding on), on random batches,
  at each batch size, for CPU fp32, CUDA fp32, CUDA fp16 and TensorRT fp16 (engines cached
  in the model's folder, profile 1..the largest batch size; a cold build counts as load time);
- fp16 parity on the GPU: CUDA fp16 against CUDA fp32 on scikit-image's photos;
- served: a real server (`tools.launch.start_server`) with the best configuration that
  ran, saturated over REST and over gRPC by `tools.bench`'s load generators in several
  processes; the served/raw ratio (raw: that configuration's best batch size), and the GPU's
  utilisation under that load, sampled through NVML in a thread;
- decode: a request's JPEGs to model input, on all CPU cores against nvJPEG
  (`service.core.gpu_decode`), for the small photo and a 12 MP one (chelsea upscaled to
  4000x3000).

A row that cannot run here (no GPU, no TensorRT libraries, the time budget spent) is skipped,
and the report says which and why: on a CPU-only machine the CPU rows still run. It writes one
JSON and one Markdown report (default `.bentoml-bench/gpu-report/`). Random weights are fine
for speed: resnet50 is imported random-init into the benchmark's own store, as `make bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import platform
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from tools import bench

REPORT_DIR = bench.BENCH_HOME / "gpu-report"
TENSORRT, CUDA = "TensorrtExecutionProvider", "CUDAExecutionProvider"
# Raw rows: the backend settings of each. Served uses the first of these, in this order of
# preference, that ran.
RAW_ROWS: dict[str, dict[str, Any]] = {
    "tensorrt-fp16": {"device": "cuda", "providers": ("tensorrt", "cuda"), "precision": "fp16"},
    "cuda-fp16": {"device": "cuda", "providers": ("cuda",), "precision": "fp16"},
    "cuda-fp32": {"device": "cuda", "providers": ("cuda",), "precision": "fp32"},
    "cpu-fp32": {"device": "cpu", "providers": ("cpu",), "precision": "fp32"},
}
LARGE_PHOTO_SIZE = (4000, 3000)  # 12 MP
DECODE_BATCH = 8


class Budget:
    """The wall-clock time left; stages that would start too late are skipped, and said so."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


class Report:
    def __init__(self, budget_s: float):
        self.data: dict[str, Any] = {
            "machine": f"{platform.node()} {platform.machine()}", "date": time.strftime(
                "%Y-%m-%d %H:%M"), "budget_s": budget_s, "environment": {}, "models": {},
            "decode": {}, "skipped": [], "complete": False}

    def write(self, out: Path, elapsed_s: float) -> str:
        """Both reports as they stand: after every stage, so that a run stopped by the hard
        timeout still leaves what it measured (`complete` is false then)."""
        self.data["elapsed_s"] = round(elapsed_s, 1)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench-gpu.json").write_text(json.dumps(self.data, indent=2))
        text = markdown(self.data)
        (out / "bench-gpu.md").write_text(text)
        return text

    def skip(self, what: str, reason: str) -> None:
        self.data["skipped"].append({"row": what, "reason": reason})
        print(f"skipped {what}: {reason}", flush=True)


def environment() -> dict[str, Any]:
    """What this machine offers, checked before anything is measured."""
    import onnxruntime as ort

    from service.core import gpu_decode, nvml, providers

    asked = (TENSORRT, CUDA, providers.CPU_PROVIDER)
    offered = ort.get_available_providers()
    usable, why = providers.usable_providers(
        tuple(p for p in asked if p in offered or p == providers.CPU_PROVIDER))
    return {"gpus": [asdict(g) for g in nvml.read_gpus()], "no_gpu": nvml.driver_missing(),
            "onnxruntime": ort.__version__, "providers_offered": offered,
            "providers_usable": list(usable), "providers_note": why,
            "nvjpeg_problem": gpu_decode.torch_cuda_problem(),
            "cores": _cores()}


def _cores() -> int:
    from service.core.config import usable_cores

    return usable_cores()


def throughput(backend: Any, item_shape: tuple[int, ...], batch_size: int,
               seconds: float) -> float:
    """Images/s of back-to-back runs on one random batch (after one untimed run)."""
    batch = np.random.default_rng(0).standard_normal((batch_size, *item_shape)).astype(
        np.float32)
    backend.run(batch)
    runs, started = 0, time.perf_counter()
    while runs == 0 or time.perf_counter() - started < seconds:
        backend.run(batch)
        runs += 1
    return runs * batch_size / (time.perf_counter() - started)


def raw_rows(name: str, batch_sizes: list[int], seconds: float, budget: Budget,
             report: Report) -> dict[str, dict[str, Any]]:
    from model_store import fp16, registry, repository
    from service.core.backends import OnnxRuntimeBackend
    from service.core.errors import DeviceUnavailable

    spec, stored = registry.get(name), repository.find(name)
    item_shape = (spec.input.channels, spec.input.size, spec.input.size)
    rows: dict[str, dict[str, Any]] = {}
    logits: dict[str, np.ndarray] = {}
    photos, _ = fp16.parity_batch(stored) if spec.labels != "digits" else (None, None)
    for row, settings in reversed(RAW_ROWS.items()):  # CPU first: it always runs
        needed = seconds * len(batch_sizes) + 5
        if budget.left() < needed:
            report.skip(f"{name} raw {row}", f"time budget: {budget.left():.0f}s left")
            continue
        started = time.perf_counter()
        try:
            backend = OnnxRuntimeBackend(stored, settings["device"], None, False,
                                         providers=settings["providers"],
                                         precision=settings["precision"], io_binding=True,
                                         max_batch_size=max(batch_sizes))
        except DeviceUnavailable as exc:
            report.skip(f"{name} raw {row}", exc.message)
            continue
        if row.startswith("tensorrt") and backend.providers[0] != TENSORRT:
            report.skip(f"{name} raw {row}", backend.execution.fallback or "no TensorRT")
            continue
        rates = {str(size): round(throughput(backend, item_shape, size, seconds), 1)
                 for size in batch_sizes}  # the first run of each size builds TensorRT's
        rows[row] = {"images_per_s": rates, "best_batch": int(max(rates, key=rates.get)),
                     "execution": backend.execution.to_dict(),
                     "load_and_measure_s": round(time.perf_counter() - started, 1)}
        print(f"{name} raw {row}: {rates} img/s", flush=True)
        if photos is not None and row in ("cuda-fp32", "cuda-fp16"):
            logits[row] = backend.run(photos)
    if len(logits) == 2:
        rows["cuda-fp16"]["parity_with_cuda_fp32"] = fp16.compare(
            logits["cuda-fp32"], logits["cuda-fp16"]).to_dict()
    return rows


def _load(protocol: str, target: str, model: str, body: bytes, concurrency: int,
          seconds: float) -> tuple[float, int]:
    """One load process: `tools.load`'s generator for one protocol, (images/s, failed)."""
    if protocol == "rest":
        return bench.rest_round(target, body, concurrency, seconds)
    return bench.grpc_round(target, model, body, concurrency, seconds)


def _ready(_: int) -> bool:
    return True


class GpuSampler:
    """NVML utilisation of the busiest GPU, sampled every `interval` s in a thread while
    `sampling()` lasts; samples add up across rounds."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()

    def _run(self) -> None:
        from service.core import nvml

        while not self._stop.is_set():
            readings = nvml.read_gpus()
            if readings:
                self.samples.append(max(r.utilisation for r in readings))
            self._stop.wait(self.interval)

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        self._stop.clear()
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()

    def summary(self) -> dict[str, float] | None:
        if not self.samples:
            return None
        return {"mean": round(statistics.fmean(self.samples), 3),
                "max": round(max(self.samples), 3), "samples": len(self.samples)}


def served_rows(name: str, raw: dict[str, dict[str, Any]], args: argparse.Namespace,
                budget: Budget, report: Report) -> dict[str, Any] | None:
    from model_store import registry
    from tools.launch import start_server, stop_server

    chosen = next((row for row in RAW_ROWS if row in raw), None)
    needed = 2 * args.rounds * args.served_seconds + 30
    if chosen is None or budget.left() < needed:
        report.skip(f"{name} served", "no raw row ran" if chosen is None else
                    f"time budget: {budget.left():.0f}s left, about {needed:.0f}s needed")
        return None
    settings = RAW_ROWS[chosen]
    workdir = args.home / "gpu-server"
    workdir.mkdir(parents=True, exist_ok=True)
    server = start_server(workdir, {
        "default_model": name, "startup_models": [name], "device": settings["device"],
        "providers": list(settings["providers"]), "precision": settings["precision"],
        "io_binding": True, "decode": "auto",
        "batching": {"max_batch_size": max(args.batch_sizes), "max_delay_ms": 0,
                     "max_queue": 8192, "instances": args.instances}},
        ready_timeout=max(30.0, budget.left() - needed / 2), check_store=False)
    body = bench.photo_jpeg(registry.get(name).input.resize)
    targets = {"rest": server.http_url + "/classify", "grpc": server.grpc_target}
    rounds: dict[str, list[float]] = {"rest": [], "grpc": []}
    utilisation = {"rest": GpuSampler(), "grpc": GpuSampler()}
    failed = 0
    try:
        execution = server.model_status(name)["execution"]
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        with ProcessPoolExecutor(args.load_processes, mp_context=context) as pool:
            list(pool.map(_ready, range(args.load_processes)))  # started before timing
            for _ in range(args.rounds):
                for protocol in ("rest", "grpc"):
                    with utilisation[protocol].sampling():
                        loads = [pool.submit(_load, protocol, targets[protocol], name, body,
                                             args.concurrency, args.served_seconds)
                                 for _ in range(args.load_processes)]
                        results = [load.result() for load in loads]
                    rounds[protocol].append(sum(rate for rate, _ in results))
                    failed += sum(f for _, f in results)
    finally:
        stop_server(server)
    raw_best = max(raw[chosen]["images_per_s"].values())
    row: dict[str, Any] = {"configuration": chosen, "execution": execution,
                           "raw_images_per_s": raw_best, "failed_requests": failed,
                           "load": {"processes": args.load_processes,
                                    "concurrency_each": args.concurrency,
                                    "seconds_each": args.served_seconds,
                                    "instances": args.instances}}
    for protocol, rates in rounds.items():
        median = statistics.median(rates)
        row[protocol] = {"rounds_images_per_s": [round(r, 1) for r in rates],
                         "images_per_s": round(median, 1),
                         "ratio": round(median / raw_best, 3),
                         "gpu_utilisation": utilisation[protocol].summary()}
    print(f"{name} served ({chosen}): REST {row['rest']['images_per_s']} img/s "
          f"(ratio {row['rest']['ratio']}), gRPC {row['grpc']['images_per_s']} img/s "
          f"(ratio {row['grpc']['ratio']})", flush=True)
    return row


def photos() -> dict[str, bytes]:
    """The small photo (scikit-image's chelsea, 451x300) and a 12 MP one made from it."""
    from tools import photos as bundled

    return {"small 451x300": bundled.jpeg("chelsea", quality=90),
            "12 MP 4000x3000": bundled.encode(bundled.framed("chelsea", *LARGE_PHOTO_SIZE,
                                                             grain=0), "JPEG", quality=90)}


def _rate(work, images_per_call: int, seconds: float) -> float:
    work()
    calls, started = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - started < seconds:
        work()
        calls += 1
    return calls * images_per_call / (time.perf_counter() - started)


def decode_rows(seconds: float, budget: Budget, report: Report) -> dict[str, Any]:
    """Images/s from JPEG bytes to model input (efficientnet_lite0's), in batches of 8: the
    CPU path on a thread per core (as the server's preprocessing pool), and nvJPEG."""
    from model_store import registry
    from model_store.transforms import preprocess
    from service.core import gpu_decode
    from service.core.decoding import DecodeLimits, decode_image

    spec = registry.get("efficientnet_lite0").input
    problem = gpu_decode.torch_cuda_problem()
    gpu = gpu_decode.GpuJpegPreprocessor("cuda", 0) if problem is None else None
    rows: dict[str, Any] = {}
    cores = _cores()
    with ThreadPoolExecutor(cores) as pool:
        for label, jpeg in photos().items():
            if budget.left() < 2 * seconds + 5:
                report.skip(f"decode {label}", f"time budget: {budget.left():.0f}s left")
                continue
            batch = [jpeg] * DECODE_BATCH

            def on_cpu(batch=batch) -> None:
                list(pool.map(lambda data: preprocess(decode_image(data, min_side=spec.resize),
                                                      spec), batch))

            rows[label] = {"cpu_images_per_s": round(_rate(on_cpu, len(batch), seconds), 1),
                           "cpu_threads": cores, "bytes": len(jpeg)}
            if gpu is None:
                report.skip(f"decode {label} nvJPEG", problem)
            else:
                rows[label]["nvjpeg_images_per_s"] = round(_rate(
                    lambda batch=batch: gpu.preprocess(batch, spec, DecodeLimits(100_000_000)),
                    len(batch), seconds), 1)
            print(f"decode {label}: {rows[label]}", flush=True)
    return rows


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    gpus = ", ".join(f"{g['name']} ({g['memory_total_bytes'] / 2**30:.0f} GiB)"
                     for g in env["gpus"]) or f"none ({env['no_gpu']})"
    lines = [f"# bench-gpu, {report['date']}"
             + ("" if report["complete"] else " (incomplete: stopped before the end)"), "",
             f"- {report['elapsed_s']} s of a {report['budget_s']:.0f} s budget",
             f"- machine: {report['machine']}, {env['cores']} cores; GPUs: {gpus}",
             f"- onnxruntime {env['onnxruntime']}: offered {env['providers_offered']}, "
             f"usable here {env['providers_usable']}"
             + (f" ({env['providers_note']})" if env["providers_note"] else ""),
             f"- nvJPEG: {env['nvjpeg_problem'] or 'available (torchvision on CUDA)'}", ""]
    for name, model in report["models"].items():
        raw = model["raw"]
        sizes = sorted({int(s) for row in raw.values() for s in row["images_per_s"]})
        lines += [f"## {name}", "", "Raw images/s by batch size (I/O binding on):", "",
                  "| configuration | providers | " + " | ".join(f"batch {s}" for s in sizes)
                  + " |", "| --- | --- |" + " --- |" * len(sizes)]
        for row_name, row in raw.items():
            lines.append(f"| {row_name} | {', '.join(row['execution']['providers'])} | "
                         + " | ".join(str(row["images_per_s"].get(str(s), "")) for s in sizes)
                         + " |")
        parity = raw.get("cuda-fp16", {}).get("parity_with_cuda_fp32")
        if parity:
            lines += ["", f"CUDA fp16 against CUDA fp32 on {parity['images']} photos: top-1 "
                      f"agreement {parity['top1_agreement']:.0%}, top-5 "
                      f"{parity['top5_agreement']:.0%}, largest probability change "
                      f"{parity['max_probability_change']:.2e}."]
        served = model.get("served")
        if served:
            lines += ["", f"Served ({served['configuration']}, {served['load']['processes']} "
                      f"load processes x {served['load']['concurrency_each']} connections, "
                      f"{served['failed_requests']} failed):", "",
                      "| protocol | images/s | served/raw | GPU utilisation mean / max |",
                      "| --- | --- | --- | --- |"]
            for protocol in ("rest", "grpc"):
                figures = served[protocol]
                use = figures["gpu_utilisation"]
                shown = f"{use['mean']:.0%} / {use['max']:.0%}" if use else "n/a (no NVML)"
                lines.append(f"| {protocol} | {figures['images_per_s']} | {figures['ratio']} "
                             f"| {shown} |")
        lines.append("")
    if report["decode"]:
        lines += ["## Decode and preprocess (JPEG bytes to model input, batches of "
                  f"{DECODE_BATCH})", "", "| photo | CPU images/s (threads) | nvJPEG images/s |",
                  "| --- | --- | --- |"]
        for label, row in report["decode"].items():
            lines.append(f"| {label} | {row['cpu_images_per_s']} ({row['cpu_threads']}) | "
                         f"{row.get('nvjpeg_images_per_s', 'skipped')} |")
        lines.append("")
    lines += ["## Skipped", ""]
    lines += [f"- {s['row']}: {s['reason']}" for s in report["skipped"]] or ["- nothing"]
    return "\n".join(lines) + "\n"


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="efficientnet_lite0,resnet50")
    parser.add_argument("--batch-sizes", default="1,8,32,64",
                        type=lambda text: [int(s) for s in text.split(",")])
    parser.add_argument("--seconds", type=float, default=2.0, help="per raw figure")
    parser.add_argument("--served-seconds", type=float, default=5.0, help="per load round")
    parser.add_argument("--rounds", type=int, default=2, help="REST and gRPC rounds, medians")
    parser.add_argument("--load-processes", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32, help="per load process")
    parser.add_argument("--instances", type=int, default=1, help="the server's per model")
    parser.add_argument("--decode-seconds", type=float, default=2.0)
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="wall-clock budget; stages that would overrun it are skipped")
    parser.add_argument("--require-gpu", action="store_true",
                        help="exit 2 at once where no usable GPU is found")
    parser.add_argument("--home", type=Path, default=bench.BENCH_HOME,
                        help="BentoML home of the benchmark's model store")
    parser.add_argument("--out", type=Path, default=REPORT_DIR)
    args = parser.parse_args(argv)
    # `timeout` (make bench-gpu's hard stop) sends SIGTERM: unwind, so that the server that
    # may be running (in a session of its own) is stopped by its `finally`.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    budget = Budget(args.budget_s)
    models = args.models.split(",")
    bench.ensure_models(models, args.home)
    report = Report(args.budget_s)
    env = report.data["environment"] = environment()
    if CUDA not in env["providers_usable"]:
        reason = env["no_gpu"] or env["providers_note"] or "no usable CUDA provider"
        print(f"no usable GPU here ({reason}): the GPU rows will be skipped", flush=True)
        if args.require_gpu:
            return 2
    else:
        print(f"GPUs: {[g['name'] for g in env['gpus']]}; usable providers "
              f"{env['providers_usable']}", flush=True)
    report.data["decode"] = decode_rows(args.decode_seconds, budget, report)
    report.write(args.out, args.budget_s - budget.left())
    for name in models:
        raw = raw_rows(name, args.batch_sizes, args.seconds, budget, report)
        report.data["models"][name] = {"raw": raw}
        report.write(args.out, args.budget_s - budget.left())
        served = served_rows(name, raw, args, budget, report)
        if served:
            report.data["models"][name]["served"] = served
        report.write(args.out, args.budget_s - budget.left())
    report.data["complete"] = True
    text = report.write(args.out, args.budget_s - budget.left())
    print(text)
    print(f"reports: {args.out / 'bench-gpu.json'} and {args.out / 'bench-gpu.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
