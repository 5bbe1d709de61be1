"""`python -m clients`: classify or embed images and list models from the command line.

    python -m clients classify cat.jpg [dog.png ...] --model resnet50 --top-k 5 [--grpc]
        [--resize-for-model]
    python -m clients embed cat.jpg [dog.png ...] --model efficientnet_lite0 [--no-normalize]
        [--grpc] [--json]
    python -m clients models [--grpc] [--json]
    python -m clients classify cat.jpg --url https://localhost:3000 --ca cert.pem

`--url` is the server (default http://localhost:3000, or localhost:3001 with --grpc);
`--tls` uses TLS, verifying the server against the system's certificate authorities, or
against the PEM file `--ca` names (a self-signed certificate, a private CA; implies --tls).
`--json` prints machine-readable output. Exit status: 0 on success, 1 when the server (or
the connection) reports an error, 2 for a usage error or a file that cannot be read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from clients.client import ConvZooClient
from clients.errors import ConvZooError
from clients.results import ClassifyResult, EmbedResult, ModelInfo

# The leading values of each vector shown in embed's table (--json prints them all).
SHOWN_VALUES = 4


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="server URL (REST) or host:port (gRPC)")
    common.add_argument("--grpc", action="store_true",
                        help="use gRPC (Open Inference Protocol) instead of REST")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    common.add_argument("--tls", action="store_true", help="use TLS")
    common.add_argument("--ca", metavar="PATH",
                        help="verify the server with these CA certificates (PEM) instead of "
                             "the system's; implies --tls")
    common.add_argument("--api-key", help="sent as 'authorization: Bearer <key>'")
    common.add_argument("--json", action="store_true", help="print JSON")
    root = argparse.ArgumentParser(prog="python -m clients",
                                   description="ConvZoo image classification client")
    commands = root.add_subparsers(dest="command", required=True)
    classify = commands.add_parser("classify", parents=[common],
                                   help="classify one or more image files")
    classify.add_argument("images", nargs="+", help="image files")
    classify.add_argument("--model", help="model name (default: the server's default)")
    classify.add_argument("--top-k", type=int, default=5, help="how many classes to show")
    classify.add_argument("--resize-for-model", action="store_true",
                          help="shrink photos before sending them to what the model uses "
                               "(saves upload and server time on camera photos)")
    embed = commands.add_parser("embed", parents=[common],
                                help="the features (penultimate layer) of image files")
    embed.add_argument("images", nargs="+", help="image files")
    embed.add_argument("--model", help="model name (default: the server's default)")
    embed.add_argument("--no-normalize", dest="normalize", action="store_false",
                       help="the raw features, not L2-normalised")
    embed.add_argument("--resize-for-model", action="store_true",
                       help="shrink photos before sending them to what the model uses")
    commands.add_parser("models", parents=[common], help="list the server's models")
    return root


def _embedding_table(paths: list[str], result: EmbedResult, out: TextIO) -> None:
    print(f"{result.model} ({result.weights}): {len(paths)} image(s), dim {result.dim}, "
          f"{'L2-normalised' if result.normalized else 'not normalised'}", file=out)
    if result.warning:
        print(f"  warning: {result.warning}", file=out)
    for path, vector in zip(paths, result.embeddings, strict=True):
        norm = sum(x * x for x in vector) ** 0.5
        head = ", ".join(f"{x:.4f}" for x in vector[:SHOWN_VALUES])
        print(f"  {path}: norm {norm:.4f}  [{head}, ...]", file=out)


def _classification_table(path: str, result: ClassifyResult, out: TextIO) -> None:
    print(f"{path}: {result.model} ({result.weights})", file=out)
    if result.warning:
        print(f"  warning: {result.warning}", file=out)
    width = max([len("label")] + [len(p.label) for p in result.predictions])
    print(f"  {'rank':>4}  {'index':>5}  {'label':<{width}}  {'score':>7}", file=out)
    for rank, p in enumerate(result.predictions, 1):
        print(f"  {rank:>4}  {p.index:>5}  {p.label:<{width}}  {p.score:>7.4f}", file=out)


def _models_table(models: list[ModelInfo], out: TextIO) -> None:
    width = max([len("model")] + [len(m.name) for m in models])
    print(f"{'model':<{width}}  {'family':<16}  {'weights':<11}  {'ready':<5}  input", file=out)
    for m in models:
        print(f"{m.name:<{width}}  {m.family:<16}  {m.weights:<11}  "
              f"{'yes' if m.ready else 'no':<5}  {m.input_size}", file=out)


def tls_options(args: argparse.Namespace) -> dict[str, Any]:
    """The client's TLS arguments: `--ca` is REST's `verify` context or gRPC's roots."""
    if args.ca is None:
        return {"tls": args.tls}
    pem = Path(args.ca).read_bytes()  # an OSError naming the file, before anything is sent
    if args.grpc:
        return {"tls": True, "root_certificates": pem}
    return {"tls": True, "verify": ssl.create_default_context(cadata=pem.decode("ascii"))}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    # The streams as they are when called (a test's capture), not when this was imported.
    out, err = out or sys.stdout, err or sys.stderr
    args = parser().parse_args(argv)
    try:
        with ConvZooClient(args.url, transport="grpc" if args.grpc else "rest",
                           timeout=args.timeout, api_key=args.api_key,
                           resize_for_model=getattr(args, "resize_for_model", False),
                           **tls_options(args)) as client:
            if args.command == "models":
                models = client.models()
                if args.json:
                    json.dump([dataclasses.asdict(m) for m in models], out, indent=2)
                    print(file=out)
                else:
                    _models_table(models, out)
                return 0
            images = list(args.images)
            if args.command == "embed":
                embedded = client.embed(images, args.model, args.normalize)
                if args.json:
                    json.dump({"images": images, **dataclasses.asdict(embedded)}, out)
                    print(file=out)
                else:
                    _embedding_table(images, embedded, out)
                return 0
            results = (client.classify_batch(images, args.model, args.top_k) if len(images) > 1
                       else [client.classify(images[0], args.model, args.top_k)])
    except ConvZooError as error:
        print(f"error: {error}", file=err)
        return 1
    except (OSError, ValueError) as error:  # an unreadable file, a URL that contradicts --tls
        print(f"error: {error}", file=err)
        return 2
    if args.json:
        payload: Any = [{"image": path, **dataclasses.asdict(result)}
                        for path, result in zip(images, results, strict=True)]
        json.dump(payload if len(payload) > 1 else payload[0], out, indent=2)
        print(file=out)
    else:
        for path, result in zip(images, results, strict=True):
            _classification_table(path, result, out)
    return 0
