"""What embedding costs against classifying: served throughput of `/embed` and `/classify` on
the same model, in one run (issue 16's goal: embed within 10 % of classify).

Starts one real server (`bentoml serve`, the model alone, batching as the shipped
`service/config.yaml` says, as `make serve` does; or, with `--batch N`, batches of up to N
images with no added delay), then alternates rounds of classify and embed load, `--rounds` of each,
each round `--clients` concurrent clients sending scikit-image's chelsea as a JPEG for
`--seconds`, over REST (a raw image body) or with `--grpc` over OIP gRPC (ModelInfer; embed
names the `features` output). The load generator is the benchmarks' own (`tools.load`).
This machine's speed drifts from minute to minute, so the rounds alternate and the ratio is
of the medians: embed images/s over classify images/s.

    python -m tools.bench_embed [--model efficientnet_lite0] [--rounds 5] [--seconds 10]
        [--clients 8] [--batch N] [--grpc] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from tools import photos
from tools.load import (
    PreparedRequest,
    RoundResult,
    image_infer_request,
    run_grpc_round,
    run_round,
)

KINDS = ("classify", "embed")


def requests(model: str, image: bytes, base_url: str, grpc: bool) -> dict[str, Any]:
    """The classify and the embed request of one photo, prepared once."""
    if grpc:
        from contract.oip import FEATURES

        classify = image_infer_request(model, image)
        embed = image_infer_request(model, image)
        embed.outputs.add(name=FEATURES)
        return {"classify": classify, "embed": embed}
    headers = {"content-type": "image/jpeg"}
    return {kind: PreparedRequest(f"{base_url}/{kind}?model={model}", image, headers)
            for kind in KINDS}


def run_rounds(server: Any, model: str, rounds: int, seconds: float, clients: int,
               grpc: bool) -> dict[str, list[RoundResult]]:
    image = photos.jpeg("chelsea", quality=90)
    prepared = requests(model, image, server.http_url, grpc)
    results: dict[str, list[RoundResult]] = {kind: [] for kind in KINDS}
    for _ in range(rounds):
        for kind in KINDS:  # alternating: both kinds see the same drift
            if grpc:
                results[kind].append(run_grpc_round(server.grpc_target, prepared[kind],
                                                    clients, seconds))
            else:
                results[kind].append(run_round(prepared[kind], clients, seconds))
    return results


def report(results: dict[str, list[RoundResult]]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for kind, rounds in results.items():
        rates = [r.images_per_s for r in rounds]
        latencies = [ms for r in rounds for ms in r.latencies_ms]
        figures[kind] = {
            "rounds_images_per_s": [round(rate, 2) for rate in rates],
            "images_per_s": round(statistics.median(rates), 2),
            "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "errors": sum(r.errors for r in rounds),
            "error_samples": [s for r in rounds for s in r.error_samples][:3]}
    classify = figures["classify"]["images_per_s"]
    figures["embed_over_classify"] = (round(figures["embed"]["images_per_s"] / classify, 3)
                                      if classify else None)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_embed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each kind")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a round")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--batch", type=int, default=None,
                        help="batches of up to this many images, no added delay (default: the "
                             "shipped configuration's batching)")
    parser.add_argument("--grpc", action="store_true", help="OIP gRPC instead of REST")
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    from tools.launch import shipped_batching, start_server, stop_server

    batching = (shipped_batching() if args.batch is None else
                {"batching": {"max_batch_size": args.batch, "max_delay_ms": 0,
                              "max_queue": 4096, "instances": 1}})
    with tempfile.TemporaryDirectory(prefix="convzoo-bench-embed-") as workdir:
        server = start_server(Path(workdir), {
            "default_model": args.model, "startup_models": [args.model], **batching})
        try:
            figures = report(run_rounds(server, args.model, args.rounds, args.seconds,
                                        args.clients, args.grpc))
        finally:
            stop_server(server)
    figures["settings"] = {"model": args.model, "rounds": args.rounds, "seconds": args.seconds,
                           "clients": args.clients, "batch": args.batch or "shipped",
                           "protocol": "grpc" if args.grpc else "rest"}
    protocol = figures["settings"]["protocol"]
    print(f"{args.model} over {protocol}, chelsea JPEG, {args.clients} clients, {args.rounds} "
          f"alternating rounds of {args.seconds:g} s each")
    for kind in KINDS:
        row = figures[kind]
        print(f"  {kind:<8}  median {row['images_per_s']:8.2f} images/s  (rounds "
              f"{', '.join(f'{r:.2f}' for r in row['rounds_images_per_s'])}; p50 "
              f"{row['p50_ms']} ms; errors {row['errors']})")
    print(f"  embed / classify: {figures['embed_over_classify']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    failed = sum(figures[kind]["errors"] for kind in KINDS)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
