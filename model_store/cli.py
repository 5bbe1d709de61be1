"""Command line of the model store.

  python -m model_store list [--json]
  python -m model_store info NAME
  python -m model_store pull [NAME ...] [--random-init]   (no names: the embedded default)
  python -m model_store import NAME --from-file PATH
  python -m model_store verify [NAME]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from model_store import registry, store


def _rows() -> list[dict]:
    statuses = store.stored_status()
    rows = []
    for spec in registry.all_specs().values():
        rows.append({
            "name": spec.name,
            "family": spec.family,
            "input": f"{spec.input.size}px",
            "labels": spec.labels,
            "published_top1": spec.published.top1 if spec.published else None,
            "weights": statuses.get(spec.name, store.MISSING),
            "offline_source": spec.offline_source.format if spec.offline_source else None,
            "download": spec.download_source.url if spec.download_source else None,
        })
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    rows = _rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':26} {'family':18} {'input':6} {'top-1':>6}  {'weights':12} offline source")
    for row in rows:
        top1 = f"{row['published_top1']:.1f}" if row["published_top1"] else "-"
        print(f"{row['name']:26} {row['family']:18} {row['input']:6} {top1:>6}  "
              f"{row['weights']:12} {row['offline_source'] or '-'}")
    counts = {s: sum(r["weights"] == s for r in rows)
              for s in (store.PRETRAINED, store.RANDOM_INIT, store.MISSING)}
    print(f"\n{len(rows)} variants: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from model_store.profiling import profile

    spec = registry.get(args.name)
    stored = store.find(spec.name)
    info = {
        "name": spec.name,
        "family": spec.family,
        "paper": spec.paper,
        "input": asdict(spec.input),
        "labels": spec.labels,
        "num_classes": spec.num_classes,
        "ladder": spec.ladder,
        "weight_sources": [asdict(w) for w in spec.weights],
        "published": asdict(spec.published) if spec.published else None,
        "computed": profile(spec),
        "stored": stored.record if stored else None,
        "weights": stored.weights_status if stored else store.MISSING,
    }
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from model_store.operations import pull

    specs = [registry.get(n) for n in args.names] or registry.embedded_defaults()
    if args.if_missing:
        present = store.stored_status()
        specs = [s for s in specs if s.name not in present]
    for spec in specs:
        print(f"pulling {spec.name} ...", file=sys.stderr)
        tag = pull(spec, random_init=args.random_init)
        print(f"stored {tag}" + (" (random-init)" if args.random_init else ""))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from model_store.operations import import_file

    tag = import_file(registry.get(args.name), Path(args.from_file))
    print(f"stored {tag}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from model_store.operations import verify

    names = [args.name] if args.name else sorted(store.stored_status())
    if not names:
        print("the model store holds no ConvZoo models; run `python -m model_store pull`",
              file=sys.stderr)
        return 1
    for name in names:
        print(json.dumps(verify(name)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model_store", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="every registry variant with its weight status")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("info", help="one variant: spec, published and computed figures")
    p.add_argument("name")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("pull", help="get real weights (no names: the embedded default)")
    p.add_argument("names", nargs="*")
    p.add_argument("--random-init", action="store_true",
                   help="store random weights, marked random-init (latency profiling only)")
    p.add_argument("--if-missing", action="store_true",
                   help="skip variants the store already holds")
    p.set_defaults(func=cmd_pull)
    p = sub.add_parser("import", help="import a local weights file (.pth/.safetensors/.h5)")
    p.add_argument("name")
    p.add_argument("--from-file", required=True)
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("verify", help="re-check stored variants")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    from model_store.registry import UnknownModel
    from model_store.store import StoreError
    from model_store.weights import WeightsError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UnknownModel, WeightsError, StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
