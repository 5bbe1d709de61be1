"""Cold start of the service, this checkout against another (e.g. the commit before a change):
from process start to `/readyz` answering 200, the serving worker's memory once ready, and
the time a fresh interpreter takes to import the service module.

Each run starts `bentoml serve` from each checkout in turn (the order alternating from run to
run, since a shared machine's speed drifts), with this environment's Python and the same model
store, polls `/readyz` every 50 ms, reads the RSS of the worker (the server's process that has
ONNX Runtime loaded) and of the whole process tree, and stops it. Two configurations:
`minimal` (LeNet-5 alone: the process's own start, imports included) and `shipped` (each
checkout's own service/config.yaml: what `make serve` starts, model loading and profiling
included). It prints the median, lowest and highest of each, and a JSON report.

    python -m tools.coldstart --other ../convzoo-before --runs 5
    python -m tools.coldstart --other ../convzoo-before --runs 3 --configs minimal
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import yaml

from tools.launch import BENTOML, ROOT, free_ports, home_sharing_store

POLL_S = 0.05
READY_TIMEOUT_S = 600.0
MINIMAL = {"default_model": "lenet5", "startup_models": ["lenet5"],
           "batching": {"instances": 1}}


@dataclass
class Start:
    ready_s: float
    worker_rss_mb: float
    tree_rss_mb: float


def import_seconds(root: Path) -> float:
    """A fresh interpreter's time to import `service.service` from `root`."""
    code = ("import time; t = time.perf_counter(); import service.service; "
            "print(time.perf_counter() - t)")
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(root)})
    if result.returncode != 0:
        raise RuntimeError(f"importing service.service from {root} failed:\n"
                           f"{result.stderr[-2000:]}")
    return float(result.stdout.strip().splitlines()[-1])


def rss_mb(root_pid: int) -> tuple[float, float]:
    """(the serving worker's RSS, the whole tree's), in MB."""
    parent = psutil.Process(root_pid)
    processes = [parent, *parent.children(recursive=True)]
    sizes = {}
    worker = None
    for process in processes:
        try:
            sizes[process.pid] = process.memory_info().rss / 1e6
            maps = Path(f"/proc/{process.pid}/maps")
            if worker is None and maps.exists() and "onnxruntime" in maps.read_text():
                worker = process.pid
        except (psutil.NoSuchProcess, OSError):
            continue
    serving = sizes.get(worker, max(sizes.values()))
    return round(serving, 1), round(sum(sizes.values()), 1)


def start_once(root: Path, config: dict, workdir: Path) -> Start:
    http_port, grpc_port = free_ports(2)
    config_path = workdir / "convzoo.yaml"
    config_path.write_text(yaml.safe_dump({**config, "grpc_port": grpc_port}))
    home = home_sharing_store(workdir / "home")
    env = {**os.environ, "CONVZOO_CONFIG": str(config_path), "BENTOML_HOME": str(home),
           "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1"}
    url = f"http://127.0.0.1:{http_port}/readyz"
    with open(workdir / "server.log", "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(BENTOML), "serve", "service.service:ConvZoo", "--host", "127.0.0.1",
             "--port", str(http_port)], cwd=root, env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with httpx.Client(timeout=1.0) as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the server from {root} exited: see "
                                       f"{workdir / 'server.log'}")
                if time.perf_counter() - started > READY_TIMEOUT_S:
                    raise RuntimeError(f"the server from {root} was not ready within "
                                       f"{READY_TIMEOUT_S:g} s")
                try:
                    if client.get(url).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(POLL_S)
        ready_s = time.perf_counter() - started
        worker, tree = rss_mb(process.pid)
        return Start(round(ready_s, 2), worker, tree)
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(10)


def config_for(name: str, root: Path) -> dict:
    if name == "minimal":
        return MINIMAL
    return yaml.safe_load((root / "service" / "config.yaml").read_text()) or {}


def summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 2), "lowest": min(values),
            "highest": max(values), "runs": values}


def measure(roots: dict[str, Path], configs: list[str], runs: int) -> dict:
    starts: dict[str, dict[str, list[Start]]] = {c: {r: [] for r in roots} for c in configs}
    imports: dict[str, list[float]] = {r: [] for r in roots}
    order = list(roots)
    with tempfile.TemporaryDirectory(prefix="convzoo-coldstart-") as tmp:
        for run in range(runs):
            for label in (order if run % 2 == 0 else order[::-1]):
                imports[label].append(round(import_seconds(roots[label]), 2))
                for config in configs:
                    workdir = Path(tmp) / f"{label}-{config}-{run}"
                    workdir.mkdir()
                    start = start_once(roots[label], config_for(config, roots[label]),
                                       workdir)
                    starts[config][label].append(start)
                    print(f"run {run + 1}/{runs} {label:<6} {config:<8} ready in "
                          f"{start.ready_s:6.2f} s, worker {start.worker_rss_mb:7.1f} MB, "
                          f"tree {start.tree_rss_mb:7.1f} MB", flush=True)
    return {
        "roots": {label: str(path) for label, path in roots.items()},
        "import_service_s": {label: summary(values) for label, values in imports.items()},
        "ready_s": {config: {label: summary([s.ready_s for s in by_root[label]])
                             for label in roots} for config, by_root in starts.items()},
        "worker_rss_mb": {config: {label: summary([s.worker_rss_mb for s in by_root[label]])
                                   for label in roots} for config, by_root in starts.items()},
        "tree_rss_mb": {config: {label: summary([s.tree_rss_mb for s in by_root[label]])
                                 for label in roots} for config, by_root in starts.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.coldstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other", type=Path, required=True,
                        help="the checkout to compare with (e.g. a worktree of the old commit)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--configs", default="minimal,shipped",
                        help="minimal and/or shipped, comma-separated")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    if not set(configs) <= {"minimal", "shipped"} or args.runs < 1:
        parser.error("--configs takes minimal and/or shipped; --runs at least 1")
    report = measure({"this": ROOT, "other": args.other.resolve()}, configs, args.runs)
    print(f"\nthis:  {ROOT}\nother: {args.other.resolve()}")
    print(f"import service.service: this {report['import_service_s']['this']['median']} s, "
          f"other {report['import_service_s']['other']['median']} s (medians)")
    for config in configs:
        ready, worker = report["ready_s"][config], report["worker_rss_mb"][config]
        print(f"{config}: process start to /readyz 200: this {ready['this']['median']} s "
              f"({ready['this']['lowest']}-{ready['this']['highest']}), other "
              f"{ready['other']['median']} s ({ready['other']['lowest']}-"
              f"{ready['other']['highest']}); worker RSS this {worker['this']['median']} MB, "
              f"other {worker['other']['median']} MB")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
