"""`make bench-peers`: ConvZoo against the serving systems users would pick instead, on the
photos users send. See tools/bench_peers/__init__.py for the method.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tools import launch
from tools.bench_peers import report as reports
from tools.bench_peers.peers import PEERS, PeerServer, PeerSettings
from tools.bench_peers.photos import PHOTO_SIZES, Photo, make_photo
from tools.bench_peers.systems import MODEL, ConvZoo, System
from tools.load import PreparedRequest, run_round

VENV_ROOT = launch.ROOT / ".venv-peers"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from service.core.config import BatchingConfig, usable_cores

    defaults = BatchingConfig()
    parser = argparse.ArgumentParser(prog="python -m tools.bench_peers", description=__doc__)
    parser.add_argument("--peers", default=",".join(PEERS),
                        help=f"comma-separated, from {', '.join(PEERS)} (default: all)")
    parser.add_argument("--photos", default=",".join(PHOTO_SIZES),
                        help=f"comma-separated, from {', '.join(PHOTO_SIZES)} (default: all)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds; each measures every system on every photo once")
    parser.add_argument("--seconds", type=float, default=10.0, help="per system, photo, round")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="unmeasured seconds of load per system and photo, before round 1")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--idle-seconds", type=float, default=5.0,
                        help="how long each system's idle CPU is measured")
    parser.add_argument("--convzoo-root", type=Path, default=launch.ROOT,
                        help="serve ConvZoo from this checkout (e.g. a git worktree of an "
                             "older commit, for before/after figures); the store is shared")
    parser.add_argument("--convzoo-instances", type=int,
                        help="ConvZoo's model instances (default: its configuration's "
                             "default), for a layout like the peers' (one per core)")
    parser.add_argument("--install", action="store_true",
                        help="create the peers' virtual environments that are missing or "
                             "out of date (from the package registry)")
    parser.add_argument("--venvs", type=Path, default=VENV_ROOT,
                        help="where the peers' virtual environments are")
    parser.add_argument("--peer-workers", type=int, default=usable_cores(),
                        help="model copies per peer, the cores divided among them "
                             "(default: the usable cores, one ONNX Runtime thread each)")
    parser.add_argument("--max-batch", type=int, default=defaults.max_batch_size,
                        help="peers' largest batch (default: ConvZoo's default)")
    parser.add_argument("--batch-delay-ms", type=float, default=defaults.max_delay_ms,
                        help="peers' longest wait for a batch to fill (default: ConvZoo's "
                             "default; TorchServe's least is 1 ms)")
    parser.add_argument("--peer-interpolation", choices=("bilinear", "bicubic"),
                        help="peers' resize filter (default: the model's own, as ConvZoo)")
    parser.add_argument("--out", type=Path,
                        help="the JSON report (the Markdown goes beside it); default "
                             "var/bench/peers-DATE.json")
    args = parser.parse_args(argv)
    args.peers = [p for p in args.peers.split(",") if p]
    args.photos = [p for p in args.photos.split(",") if p]
    unknown = ([p for p in args.peers if p not in PEERS]
               + [p for p in args.photos if p not in PHOTO_SIZES])
    if unknown:
        parser.error(f"unknown peer or photo: {', '.join(unknown)}")
    if (min(args.rounds, args.clients, args.peer_workers, args.max_batch,
            1 if args.convzoo_instances is None else args.convzoo_instances) < 1
            or min(args.seconds, args.idle_seconds) <= 0):
        parser.error("--rounds, --clients, --peer-workers, --max-batch, --convzoo-instances, "
                     "--seconds and --idle-seconds must be positive")
    args.out = args.out or launch.ROOT / "var" / "bench" / time.strftime(
        "peers-%Y%m%d-%H%M%S.json")
    return args


def model_for_peers(interpolation: str | None) -> dict[str, Any]:
    """The stored ONNX file, label names and preprocessing that every peer is given."""
    from model_store import registry, repository
    from model_store.labels import label_names

    spec = registry.get(MODEL)
    if MODEL not in repository.stored_status():
        raise SystemExit(f"{MODEL} is not in the model store; run `make models` first")
    return {"model": str(repository.find(MODEL).onnx_path),
            "labels": list(label_names(spec.labels)),
            "preprocessing": {"resize": spec.input.resize, "size": spec.input.size,
                              "interpolation": interpolation or spec.input.interpolation,
                              "mean": list(spec.input.mean), "std": list(spec.input.std)}}


def machine() -> dict[str, Any]:
    from service.core.config import usable_cores

    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu_model": model, "cores": usable_cores(), "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}


def start_peers(peers: list[PeerServer], workdir: Path, attempts: int = 3
                ) -> tuple[dict[str, str], dict[str, str]]:
    """Start the peers one after another, each paused once it serves, each given more than
    one try: a start on a loaded machine can miss a peer's own short internal time-out
    (PyTriton's model instances wait 1 s for its handshake socket). Returns the peers that
    did not start and why, and the retried ones' first failure; neither is fatal."""
    failed: dict[str, str] = {}
    retried: dict[str, str] = {}
    for peer in peers:
        for attempt in range(1, attempts + 1):
            try:
                peer.start(workdir / f"{peer.name}-{attempt}")
            except Exception as exc:  # noqa: BLE001 (reported; the other systems go on)
                failed[peer.name] = f"failed to start ({attempt} tries): {exc}"
                print(f"[bench-peers] {peer.name} failed to start (try {attempt}): "
                      f"{str(exc).splitlines()[0]}", flush=True)
                continue
            peer.pause()
            if attempt > 1:
                retried[peer.name] = failed.pop(peer.name)
            break
    return failed, retried


def check_top1(systems: list[System], photos: list[Photo]
               ) -> tuple[dict[str, dict[str, str | None]], dict[str, dict[str, str]]]:
    """Each system's best label for each photo, and the systems to leave out of a photo's
    load because they disagree with ConvZoo (a broken handler's speed proves nothing)."""
    top1: dict[str, dict[str, str | None]] = {}
    excluded: dict[str, dict[str, str]] = {}
    for photo in photos:
        labels: dict[str, str | None] = {}
        reasons: dict[str, str] = {}
        for system in systems:
            try:
                with system.awake():
                    labels[system.name] = system.classify_once(photo)
            except Exception as exc:  # noqa: BLE001 (any failure is reported, not fatal)
                labels[system.name] = None
                reasons[system.name] = f"no answer: {exc}"
        reference = labels[reports.CONVZOO]
        for name, label in labels.items():
            if name not in reasons and name != reports.CONVZOO and label != reference:
                reasons[name] = f"top-1 {label!r} differs from ConvZoo's {reference!r}"
        top1[photo.name], excluded[photo.name] = labels, reasons
    return top1, excluded


def idle_cpu_percent(systems: list[System], seconds: float) -> dict[str, float]:
    """Each system's CPU use with no request, measured alone (the others paused)."""
    idle = {}
    for system in systems:
        with system.awake():
            time.sleep(1.0)  # settle after being continued
            before, started = system.cpu_seconds(), time.perf_counter()
            time.sleep(seconds)
            used = system.cpu_seconds() - before
            idle[system.name] = round(100 * used / (time.perf_counter() - started), 1)
    return idle


def measured_round(system: System, request: PreparedRequest, args: argparse.Namespace,
                   seconds: float) -> dict[str, Any]:
    """One round of load on `system` alone (the others paused), with its CPU per image."""
    with system.awake():
        before = system.cpu_seconds()
        figures = run_round(request, args.clients, seconds).figures()
        used = system.cpu_seconds() - before
    served = figures["served"]
    figures["server_cpu_ms_per_image"] = round(used * 1000 / served, 1) if served else None
    return figures


def measure(systems: list[System], photos: list[Photo], excluded: dict[str, dict[str, str]],
            args: argparse.Namespace) -> dict[str, dict[str, dict[str, Any]]]:
    """Warm-up, then rounds; within a round each photo's systems run one after another, the
    order rotated from round to round so that no system always follows the same one."""
    plan = {photo.name: [(system, system.prepare(photo)) for system in systems
                         if system.name not in excluded[photo.name]] for photo in photos}
    if args.warmup > 0:
        for entries in plan.values():
            for system, request in entries:
                measured_round(system, request, args, args.warmup)
    rounds: dict[str, dict[str, list[dict[str, Any]]]] = {
        photo: {system.name: [] for system, _ in entries} for photo, entries in plan.items()}
    for index in range(args.rounds):
        for photo_name, entries in plan.items():
            shift = index % max(1, len(entries))
            for system, request in entries[shift:] + entries[:shift]:
                figures = measured_round(system, request, args, args.seconds)
                rounds[photo_name][system.name].append(figures)
                print(f"[bench-peers] round {index + 1}/{args.rounds} {photo_name:>5} "
                      f"{system.name:<10} {figures['images_per_s']:8.2f} img/s  p50 "
                      f"{figures['p50_ms']} ms  p99 {figures['p99_ms']} ms  server CPU "
                      f"{figures['server_cpu_ms_per_image']} ms/img  errors "
                      f"{figures['errors']}", flush=True)
    results = {}
    for photo_name, by_system in rounds.items():
        results[photo_name] = {name: reports.summarize(r) for name, r in by_system.items()}
        reports.add_ratios(results[photo_name])
    return results


def run(args: argparse.Namespace) -> int:
    settings = PeerSettings(workers=args.peer_workers,
                            threads=max(1, machine()["cores"] // args.peer_workers),
                            max_batch_size=args.max_batch, batch_delay_ms=args.batch_delay_ms)
    model = model_for_peers(args.peer_interpolation)
    peers = [PEERS[name](settings, model, args.venvs) for name in args.peers]
    if args.install:
        for peer in peers:
            if peer.environment.problem():
                peer.environment.create()
    problems = [problem for peer in peers if (problem := peer.problem())]
    if problems:
        print("[bench-peers] cannot run:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    photos = [make_photo(name) for name in args.photos]
    workdir = args.out.parent / (args.out.stem + "-servers")
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine(),
        "settings": {"clients": args.clients, "rounds": args.rounds, "seconds": args.seconds,
                     "warmup_seconds": args.warmup, "peers": vars(settings) | {
                         "interpolation": model["preprocessing"]["interpolation"]}},
        "photos": {photo.name: photo.describe() for photo in photos}}
    convzoo = ConvZoo(args.convzoo_root, args.convzoo_instances)
    systems: list[System] = [convzoo, *peers]
    try:
        load_s = (args.warmup + args.rounds * args.seconds) * len(photos) * len(systems)
        print(f"[bench-peers] starting ConvZoo from {convzoo.root}, then "
              f"{', '.join(p.name for p in peers) or 'no peer'}; logs in {workdir}; then "
              f"{load_s / 60:.1f} min of load or more (large photos' last requests finish "
              "after each round's time)", flush=True)
        # Each system is paused once it serves, so that none slows the next one's start.
        convzoo.start(workdir / convzoo.name)
        convzoo.pause()
        report["skipped"], report["retried_starts"] = start_peers(peers, workdir)
        running = [s for s in systems if s.name not in report["skipped"]]
        report["systems"] = {}
        for system in running:
            with system.awake():
                report["systems"][system.name] = system.describe()
        report["top1"], report["excluded"] = check_top1(running, photos)
        report["idle_cpu_percent"] = idle_cpu_percent(running, args.idle_seconds)
        report["results"] = measure(running, photos, report["excluded"], args)
    finally:
        for system in systems:
            system.stop()
    report["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    markdown_path = reports.write(report, args.out)
    print("\n" + reports.results_table(report))
    problems = list(report["skipped"].items()) + [
        (f"{name} on {photo}", why) for photo, reasons in report["excluded"].items()
        for name, why in reasons.items()]
    for what, why in problems:
        print(f"[bench-peers] {what}: {why}", file=sys.stderr)
    print(f"[bench-peers] report: {args.out} and {markdown_path}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("BENTOML_HOME", str(launch.ROOT / ".bentoml"))
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    # `kill` stops the servers too: SIGTERM unwinds like Ctrl-C, through run()'s cleanup.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)
